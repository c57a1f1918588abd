/**
 * For loading the real vscode-languageclient against the `vscode` mock: every name the mock does
 * not define becomes a stub that can be called, constructed, extended and read from, and whose
 * results are stubs too (with `dispose`), so the client's feature registrations succeed.
 */

export function deepStub(name = 'stub'): unknown {
  const target = function stub() {} as unknown as Record<string | symbol, unknown>;
  return new Proxy(target, {
    get(_target, property) {
      if (property === 'then') return undefined; // not a promise
      if (property === Symbol.toPrimitive) return () => name;
      if (property === 'prototype') return Object.prototype;
      if (property === 'dispose') return () => undefined;
      return deepStub(`${name}.${String(property)}`);
    },
    apply: () => deepStub(`${name}()`),
    construct: () => deepStub(`new ${name}`) as object,
  });
}

/** `namespace` with every missing member stubbed. */
export function withStubs<T extends object>(namespace: T, name: string): T {
  return new Proxy(namespace, {
    get(target, property) {
      if (property in target) return (target as Record<string | symbol, unknown>)[property];
      if (property === 'then') return undefined;
      return deepStub(`${name}.${String(property)}`);
    },
  });
}

/**
 * The whole `vscode` module for the bundle: the mock's exports, its namespaces with missing members
 * stubbed, other lower-case names as stubbed namespaces, other capitalised names as plain classes.
 */
export function vscodeModule(mock: Record<string, unknown>): Record<string | symbol, unknown> {
  const namespaces = new Map<string, unknown>();
  return new Proxy({ ...mock }, {
    get(target, property) {
      if (typeof property !== 'string') return (target as Record<symbol, unknown>)[property];
      const value = (target as Record<string, unknown>)[property];
      const isNamespace = /^[a-z]/.test(property);
      if (isNamespace && (value === undefined || (typeof value === 'object' && value !== null))) {
        if (!namespaces.has(property)) {
          namespaces.set(property, withStubs((value as object | undefined) ?? {}, property));
        }
        return namespaces.get(property);
      }
      if (value !== undefined || property in target) return value;
      return class Anything {};
    },
  });
}
