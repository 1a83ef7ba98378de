/** Logging: the ring log file, its reader and the pino destination (winston: `tensorvault/winston`). */
export {
  LEVELS,
  type LevelName,
  levelName,
  type RingLogContents,
  type RingLogRecord,
  readRingLog,
} from './format';
export { type RingDestination, type RingDestinationOptions, ringDestination } from './pino';
export {
  type LogFields,
  MAX_CAPACITY_LINES,
  RING_LOG_CHANNEL,
  RingFileLog,
  type RingFileLogOptions,
  type RingFileLogStats,
  type RingLogEvent,
} from './ring';
