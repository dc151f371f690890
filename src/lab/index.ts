export {
  TwoHostLab,
  killLeftoverQemu,
  type HostKey,
  type LabHostKey,
  type LabAgent,
  type TwoHostLabOptions,
} from './two-host-lab.js';
export {
  createThreeHostNetwork,
  createTwoHostNetwork,
  canUseNetns,
  labTag,
  LAB_BRIDGE,
  removeNetns,
  inNetns,
  type TwoHostNetwork,
  type LabHost,
} from './netns.js';
