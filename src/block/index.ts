export {
  authzSimpleObject,
  blockExportAdd,
  blockExportDel,
  blockJobCancel,
  blockdevMirror,
  dirtyBytesByNode,
  nbdServerStart,
  nbdTargetNode,
  parseBlockJobs,
  sumDiskSamples,
  type BlockJobInfo,
  type DiskSample,
  type NbdAddress,
  type QmpCall,
} from './block-qmp.js';
export {
  createImage,
  edgeHash,
  identityMismatch,
  imageIdentity,
  imageInfo,
  parseImageInfo,
  qemuImgCreateArgs,
  runQemuImg,
  type DiskFormat,
  type ImageIdentity,
  type ImageInfo,
  type NewImage,
  type QemuImgRunner,
} from './disk-image.js';
export {
  checkLocalDiskPath,
  destinationBacking,
  diskImagePath,
  isInside,
  type DiskStorage,
} from './disk-location.js';
export { DiskMirrors, type MirroredDisk, type NbdClientTls } from './disk-mirrors.js';
export { NbdExports, type ExportedDisk, type NbdServerTls } from './nbd-exports.js';
