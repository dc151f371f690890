export {
  authzHostObject,
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
export { destinationBacking, isInside } from './disk-location.js';
export {
  DiskMirrors,
  leftoverMirrors,
  mirrorPrefix,
  type MirroredDisk,
  type NbdClientTls,
} from './disk-mirrors.js';
export { NbdExports, type ExportedDisk, type NbdServerTls } from './nbd-exports.js';
export {
  checkDiskCheckRequest,
  inspectSourceDisks,
  placeProbes,
  viewDisks,
  type DiskCheckRequest,
} from './disk-check.js';
export {
  createTargetImages,
  leftoverFiles,
  removeLeftovers,
  stagingPath,
  targetImagePaths,
  type CreatedFile,
  type CreationLedger,
  type TargetImages,
} from './target-images.js';
