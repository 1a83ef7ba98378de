// Type-checks consumer files against tensorvault's published declarations with the TypeScript compiler
// API, the way a user's `tsc` sees them: `dir` holds the files and a node_modules/tensorvault (a symlink
// to this checkout, or the packed package installed), and each module setting is one program. Parsed
// files (lib.*.d.ts, @types/node, the package's .d.ts) are shared between the programs.
import { join, relative } from 'node:path';
import ts from 'typescript';

const root = join(__dirname, '..', '..');

/** A module setting a consumer may use. */
export type ModuleSetting = 'node16' | 'nodenext' | 'bundler' | 'commonjs';

const MODULE: Record<ModuleSetting, Pick<ts.CompilerOptions, 'module' | 'moduleResolution'>> = {
  node16: { module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16 },
  nodenext: { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext },
  bundler: { module: ts.ModuleKind.Preserve, moduleResolution: ts.ModuleResolutionKind.Bundler },
  // TypeScript 5's default for `module: commonjs`: node10 resolution, which does not read `exports`.
  commonjs: { module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 },
};

/**
 * The diagnostics (`file(line,col): TSxxxx message`, paths relative to `dir`) of `files` (in `dir`)
 * compiled strictly under `setting`: an empty list means they compile, their `@ts-expect-error` lines
 * included (an expected error that does not occur is TS2578).
 */
export function typecheck(
  dir: string,
  files: readonly string[],
  setting: ModuleSetting,
  extra: ts.CompilerOptions = {},
): string[] {
  const options: ts.CompilerOptions = {
    ...MODULE[setting],
    strict: true,
    exactOptionalPropertyTypes: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    lib: ['lib.es2023.d.ts', 'lib.esnext.disposable.d.ts'],
    types: ['node'],
    typeRoots: [join(root, 'node_modules', '@types')],
    esModuleInterop: true,
    // The package's own declarations are what is under test.
    skipLibCheck: false,
    ...extra,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (fileName, languageVersion, onError, shouldCreate) => {
    const key = `${fileName}\0${JSON.stringify(languageVersion)}`;
    let sf = parsed.get(key);
    if (sf === undefined) {
      sf = getSourceFile(fileName, languageVersion, onError, shouldCreate);
      if (sf !== undefined) parsed.set(key, sf);
    }
    return sf;
  };
  const program = ts.createProgram(
    files.map((f) => join(dir, f)),
    options,
    host,
  );
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (d.file === undefined || d.start === undefined) return `TS${d.code} ${text}`;
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const name = relative(dir, d.file.fileName);
    return `${name.startsWith('..') ? d.file.fileName : name}(${line + 1},${character + 1}): TS${d.code} ${text}`;
  });
}

const parsed = new Map<string, ts.SourceFile>();
