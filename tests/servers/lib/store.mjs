// Storage for the test FHIR server: @medplum/fhir-router's MemoryRepository
// (its `resources` and `history` maps keep the data), with the behaviour a
// real server has and the in-memory one lacks:
//   - the server always assigns meta.versionId (a counter "1", "2", ... per
//     resource, like HAPI) and meta.lastUpdated (non-decreasing, canonical
//     'YYYY-MM-DDThh:mm:ss.sssZ');
//   - create (POST) assigns a fresh id, ignoring the client's; update (PUT)
//     keeps it and creates the resource when it does not exist;
//   - delete leaves a tombstone: read answers 410 Gone, the version counter
//     continues on re-create;
//   - readHistory returns newest first without reversing the stored list in
//     place (medplum's in-memory repository flips it on every call);
//   - transactions are atomic: every write inside withTransaction() is
//     journalled and undone if the callback throws;
//   - search() uses the fast matcher in search.mjs.
// All methods complete without yielding to the event loop, so one HTTP
// request's transaction never interleaves with another request.

import { MemoryRepository } from '@medplum/fhir-router';
import { OperationOutcomeError, badRequest, deepClone, gone, notFound, preconditionFailed } from '@medplum/core';
import { randomUUID } from 'node:crypto';
import { compileSearchRequest, sortResources } from './search.mjs';

// FHIR ids are [A-Za-z0-9-.]{1,64}; one HL7 R4 example has a 66-character
// id, so the store takes up to 128 so that the whole examples corpus loads.
const ID_RE = /^[A-Za-z0-9\-.]{1,128}$/;

export class TestRepository extends MemoryRepository {
  constructor() {
    super();
    this.versions = new Map(); // 'Type/id' -> last version number
    this.tombstones = new Map(); // 'Type/id' -> { versionId, lastUpdated }
    this.lastStamp = 0;
    /* Milliseconds added to the machine's clock (POST /__control/clock), to
     * play a server whose clock is off from the client's. */
    this.clockOffsetMs = 0;
    this.journal = null;
    this.writeCount = 0;
  }

  /* Drops every resource, version counter and tombstone. */
  clear() {
    super.clear();
    this.versions.clear();
    this.tombstones.clear();
  }

  generateId() {
    return randomUUID();
  }

  /* A non-decreasing server clock as a canonical instant string. */
  now() {
    const t = Math.max(Date.now() + this.clockOffsetMs, this.lastStamp);
    this.lastStamp = t;
    return new Date(t).toISOString();
  }

  /* The map of current resources of one type (created on demand). */
  typeMap(resourceType) {
    let m = this.resources.get(resourceType);
    if (!m) {
      m = new Map();
      this.resources.set(resourceType, m);
    }
    return m;
  }

  /* The current resource object (not a copy; callers must not mutate). */
  peek(resourceType, id) {
    return this.resources.get(resourceType)?.get(id);
  }

  /*
   * Stores `resource` (owned by the store from now on, not copied) as the
   * next version of resourceType/id. meta.versionId and meta.lastUpdated are
   * assigned unless `keepMeta` asks to keep a given lastUpdated (the
   * /__control/load path, for tests that need historic timestamps).
   */
  put(resource, { keepMeta = false } = {}) {
    const { resourceType, id } = resource;
    if (typeof id !== 'string' || !ID_RE.test(id)) {
      throw new OperationOutcomeError(badRequest(`Invalid resource id: ${String(id).slice(0, 80)}`));
    }
    const key = resourceType + '/' + id;
    const map = this.typeMap(resourceType);
    let hist = this.history.get(resourceType);
    if (!hist) {
      hist = new Map();
      this.history.set(resourceType, hist);
    }
    let versions = hist.get(id);
    if (!versions) {
      versions = [];
      hist.set(id, versions);
    }
    if (this.journal) {
      this.journal.push({
        resourceType,
        id,
        prev: map.get(id),
        histLen: versions.length,
        version: this.versions.get(key),
        tombstone: this.tombstones.get(key),
      });
    }
    const version = (this.versions.get(key) ?? 0) + 1;
    this.versions.set(key, version);
    let lastUpdated;
    const given = resource.meta?.lastUpdated;
    if (keepMeta && typeof given === 'string' && !Number.isNaN(Date.parse(given))) {
      lastUpdated = new Date(Date.parse(given)).toISOString();
    } else {
      lastUpdated = this.now();
    }
    resource.meta = { ...(resource.meta ?? {}), versionId: String(version), lastUpdated };
    map.set(id, resource);
    versions.push(resource);
    this.tombstones.delete(key);
    this.writeCount++;
    return resource;
  }

  async createResource(resource, options) {
    const copy = JSON.parse(JSON.stringify(resource));
    if (!(options?.assignedId && copy.id)) copy.id = this.generateId();
    return deepClone(this.put(copy));
  }

  async updateResource(resource, options) {
    if (!resource.id) throw new OperationOutcomeError(badRequest('Missing id'));
    if (options?.ifMatch) {
      const existing = this.peek(resource.resourceType, resource.id);
      if (!existing) throw new OperationOutcomeError(notFound);
      if (existing.meta?.versionId !== options.ifMatch) throw new OperationOutcomeError(preconditionFailed);
    }
    const copy = JSON.parse(JSON.stringify(resource));
    return deepClone(this.put(copy));
  }

  async readResource(resourceType, id) {
    const r = this.peek(resourceType, id);
    if (!r) {
      if (this.tombstones.has(resourceType + '/' + id)) throw new OperationOutcomeError(gone);
      throw new OperationOutcomeError(notFound);
    }
    return deepClone(r);
  }

  async deleteResource(resourceType, id) {
    const map = this.resources.get(resourceType);
    if (!map?.get(id)) throw new OperationOutcomeError(notFound);
    const key = resourceType + '/' + id;
    if (this.journal) {
      this.journal.push({
        resourceType,
        id,
        prev: map.get(id),
        histLen: this.history.get(resourceType)?.get(id)?.length ?? 0,
        version: this.versions.get(key),
        tombstone: this.tombstones.get(key),
      });
    }
    const version = (this.versions.get(key) ?? 0) + 1;
    this.versions.set(key, version);
    this.tombstones.set(key, { versionId: String(version), lastUpdated: this.now() });
    map.delete(id);
    this.writeCount++;
  }

  async readHistory(resourceType, id, options) {
    const versions = this.history.get(resourceType)?.get(id);
    if (!versions?.length) {
      await this.readResource(resourceType, id); // throws 404 / 410
    }
    const all = [...versions].reverse();
    const offset = options?.offset ?? 0;
    const limit = options?.limit ?? all.length;
    const entry = all.slice(offset, offset + limit).map((v) => ({ resource: deepClone(v) }));
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: all.length,
      ...(entry.length ? { entry } : undefined),
    };
  }

  /*
   * Matches of a medplum SearchRequest in storage (creation) order, or
   * sorted by its sort rules; the stored objects, not copies.
   */
  matchAll(searchRequest) {
    const map = this.resources.get(searchRequest.resourceType);
    if (!map) return [];
    const preds = compileSearchRequest(searchRequest);
    const out = [];
    for (const r of map.values()) {
      let ok = true;
      for (const p of preds) {
        if (!p(r)) {
          ok = false;
          break;
        }
      }
      if (ok) out.push(r);
    }
    return sortResources(out, searchRequest.sortRules ?? []);
  }

  async search(searchRequest) {
    const all = this.matchAll(searchRequest);
    let list = all;
    if (searchRequest.offset) list = list.slice(searchRequest.offset);
    if (searchRequest.count !== undefined) list = list.slice(0, searchRequest.count);
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      total: all.length,
      entry: list.length ? list.map((r) => ({ resource: deepClone(r) })) : undefined,
    };
  }

  /*
   * Runs `callback` atomically: writes are journalled and rolled back in
   * reverse order if it throws. Re-entrant (conditional create inside a
   * transaction joins the outer journal).
   */
  async withTransaction(callback) {
    if (this.journal) return callback(undefined);
    this.journal = [];
    try {
      return await callback(undefined);
    } catch (err) {
      this.rollback(this.journal);
      throw err;
    } finally {
      this.journal = null;
    }
  }

  rollback(journal) {
    for (let i = journal.length - 1; i >= 0; i--) {
      const j = journal[i];
      const key = j.resourceType + '/' + j.id;
      const map = this.typeMap(j.resourceType);
      if (j.prev) map.set(j.id, j.prev);
      else map.delete(j.id);
      const versions = this.history.get(j.resourceType)?.get(j.id);
      if (versions) versions.length = j.histLen;
      if (j.version === undefined) this.versions.delete(key);
      else this.versions.set(key, j.version);
      if (j.tombstone) this.tombstones.set(key, j.tombstone);
      else this.tombstones.delete(key);
    }
  }

  /* Number of current resources per type. */
  counts() {
    const out = {};
    for (const [t, m] of this.resources) if (m.size) out[t] = m.size;
    return out;
  }
}
