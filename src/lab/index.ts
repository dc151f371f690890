export {
  TwoHostLab,
  killLeftoverQemu,
  type HostKey,
  type LabAgent,
  type TwoHostLabOptions,
} from './two-host-lab.js';
export {
  createTwoHostNetwork,
  canUseNetns,
  labTag,
  LAB_BRIDGE,
  removeNetns,
  inNetns,
  type TwoHostNetwork,
  type LabHost,
} from './netns.js';
