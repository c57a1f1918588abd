/**
 * `npm run package` builds an installable .vsix offline: the production bundle, the manifest, the
 * README, licence, changelog and icon, and nothing else (no sources, tests or node_modules).
 * It packages a copy of the extension, so the production build never replaces the out/extension.js
 * that the other tests load meanwhile.
 */

import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'promptrail-vsix-'));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** The entries of a zip file, read with Python's zipfile (the server's own runtime). */
function zipEntries(path: string): string[] {
  const script = 'import sys, zipfile; print("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))';
  return execFileSync('python3', ['-c', script, path], { encoding: 'utf8' }).trim().split('\n').sort();
}

describe('npm run package', () => {
  it('builds a .vsix with exactly the files an installed extension needs', () => {
    const copy = join(scratch, 'extension');
    cpSync(root, copy, { recursive: true, filter: (source) => !/[/\\](node_modules|out)$/.test(source) });
    symlinkSync(join(root, 'node_modules'), join(copy, 'node_modules'), 'dir');
    const vsix = join(scratch, 'promptrail.vsix');
    execFileSync('npm', ['run', '--silent', 'package', '--', '--out', vsix], { cwd: copy, stdio: 'pipe' });

    expect(zipEntries(vsix)).toEqual([
      '[Content_Types].xml',
      'extension.vsixmanifest',
      'extension/LICENSE.txt',
      'extension/changelog.md',
      'extension/media/promptrail.svg',
      'extension/out/extension.js',
      'extension/package.json',
      'extension/readme.md',
    ]);
    const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    expect(manifest.main).toBe('./out/extension.js');
    // The production bundle is minified and carries no source map.
    const bundle = readFileSync(join(copy, 'out', 'extension.js'), 'utf8');
    expect(bundle).not.toContain('sourceMappingURL');
  }, 120_000);
});
