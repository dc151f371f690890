// Public face of src/config: reading nova.conf the way oslo.config and nova's libvirt
// driver do. Parse (strings + lines) -> type (validated) -> resolve (value + source).
export { parseIni, type IniDocument, type IniEntry, type IniSection } from './ini-parser.js';
export {
  OPTIONS,
  OPTION_NAMES,
  findOption,
  type OptionName,
  type OptionSpec,
  type OptionType,
  type OptionValues,
} from './option-table.js';
export { typeOptions, type ConfigWarning, type TypedConfig, type TypedValue } from './type-options.js';
export {
  describeSource,
  isSet,
  optionsFrom,
  resolveOptions,
  type OptionSource,
  type ResolvedOption,
  type ResolvedOptions,
} from './resolve-options.js';
export {
  MIGRATE_FLAGS,
  computeMigrationFlags,
  parseFlagList,
  type FlagMode,
  type MigrationFlags,
} from './migration-flags.js';
export { checkConfig, configCheckJson, type ConfigCheck } from './config-check.js';
export { loadMigrationOptions } from './load-options.js';
export {
  upgradeConfig,
  type ConfigUpgrade,
  type FlagWithoutEquivalent,
  type UpgradeSetting,
} from './config-upgrade.js';
export { unifiedDiff } from './unified-diff.js';
export { replaceFileAtomically } from './atomic-replace.js';
