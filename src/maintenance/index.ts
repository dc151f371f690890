// Public face of src/maintenance: queues, placement and drains of a host's VMs.
export { SendQueue, busyRetryDelayMs, type QueuedItem } from './send-queue.js';
export {
  chooseDestination,
  placeAll,
  type Placement,
  type PlacementCandidate,
  type PlacementVm,
} from './placement.js';
export {
  DRAIN_MAX_ATTEMPTS,
  attemptEnded,
  attemptStarted,
  drainProgress,
  excludedFor,
  itemsToPlace,
  newDrainJob,
  settleDrain,
  unplaced,
  withItem,
  type DrainAttempt,
  type DrainItem,
  type DrainItemStatus,
  type DrainJob,
  type DrainState,
} from './drain.js';
