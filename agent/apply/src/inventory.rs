//! The durable record of what gitwarden applied, sharded over ConfigMaps.
//!
//! Prune must know what gitwarden applied before, even after a restart, and
//! the no-op check must know the hash and `resourceVersion` of each object's
//! last apply. The record lives in the cluster, next to what it describes.
//! One ConfigMap holds at most 1 MiB, and 10,000 entries take about 1.5 MB,
//! so entries are spread over `<name>-0`, `<name>-1`, … each under
//! [`MAX_SHARD_BYTES`]; a shard is written only when its content changed, so
//! a no-op resync writes nothing.
//!
//! Entry format, one per line (the object reference last, since it holds
//! spaces): `<manifest sha256> <fields digest or -> <resourceVersion or ->
//! @<source> <ObjectRef>`, where `source` is the object's `file:line` in git
//! (percent-encoded, empty when unknown): the webhook reads it to tell a
//! refused person which line to edit. The inventory is rewritten whenever
//! the revision changes anyway, so recording it there costs no write, and
//! an object moving in its file rewrites no object. Lines written before
//! the source existed (no `@` field) still read.

use crate::error::InventoryError;
use gitwarden_manifests::ObjectRef;
use gitwarden_shared::source::{
    INVENTORY_ENTRIES, INVENTORY_LABEL, INVENTORY_REVISION, decode_field, encode_field,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use std::collections::{BTreeMap, BTreeSet};

/// The budget of one shard's entries, well under the 1 MiB object limit to
/// leave room for metadata and `managedFields`.
pub const MAX_SHARD_BYTES: usize = 800 * 1024;

/// The label marking inventory shards, so they can be listed in one request
/// (the webhook lists them too, for the sources).
const SHARD_LABEL: &str = INVENTORY_LABEL;
/// The data key holding the revision the shard was written at.
const REVISION_KEY: &str = INVENTORY_REVISION;
/// The data key holding the entries.
const ENTRIES_KEY: &str = INVENTORY_ENTRIES;
/// The field manager for inventory writes, apart from the objects' manager.
const INVENTORY_MANAGER: &str = "gitwarden-inventory";

/// What gitwarden recorded about one object at its last apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InventoryEntry {
    /// SHA-256 of the applied body; a different hash means git changed.
    pub hash: String,
    /// The digest of gitwarden's `managedFields` entry after the apply
    /// (empty when unknown); see [`crate::fingerprint::fields_fingerprint`].
    pub fields: String,
    /// The `resourceVersion` the apply returned (empty when unknown).
    pub resource_version: String,
    /// Where the object is written in git (`file:line`, with the
    /// kustomization that rendered it), empty when unknown.
    pub source: String,
}

/// Every object gitwarden applied, and the revision it last synced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inventory {
    /// The revision of the last sync that wrote the inventory.
    pub revision: Option<String>,
    /// The objects, ordered by identity (so shards are deterministic).
    pub entries: BTreeMap<ObjectRef, InventoryEntry>,
}

/// The inventory as stored: the shards' names and data, to write only
/// shards that changed and delete those no longer needed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredShards {
    shards: BTreeMap<String, BTreeMap<String, String>>,
}

/// Reads and writes the inventory shards of one agent.
#[derive(Clone)]
pub struct InventoryStore {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for InventoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryStore")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl InventoryStore {
    /// The inventory named `name` (shards `<name>-<n>`) in `namespace`, which
    /// must exist (it is the agent's own namespace).
    pub fn new(client: Client, namespace: &str, name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    /// Reads every shard (one LIST request) and merges their entries.
    ///
    /// Should a previous write have stopped half-way, shards of two revisions
    /// are merged: a superset is safe, as prune re-checks every object live.
    pub async fn load(&self) -> Result<(Inventory, StoredShards), InventoryError> {
        let selector = format!("{SHARD_LABEL}={}", self.name);
        let list = self
            .api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| InventoryError::Read {
                namespace: self.namespace.clone(),
                source,
            })?;
        let mut inventory = Inventory::default();
        let mut stored = StoredShards::default();
        let mut items: Vec<ConfigMap> = list.items;
        items.sort_by_key(|map| shard_index(map.metadata.name.as_deref().unwrap_or("")));
        for map in items {
            let name = map.metadata.name.clone().unwrap_or_default();
            let data = map.data.unwrap_or_default();
            if let Some(revision) = data.get(REVISION_KEY) {
                inventory.revision.get_or_insert_with(|| revision.clone());
            }
            if let Some(entries) = data.get(ENTRIES_KEY) {
                parse_entries(entries, &mut inventory.entries).map_err(|(line, message)| {
                    InventoryError::Malformed {
                        namespace: self.namespace.clone(),
                        name: name.clone(),
                        line,
                        message,
                    }
                })?;
            }
            stored.shards.insert(name, data);
        }
        Ok((inventory, stored))
    }

    /// Writes `inventory`, touching only shards whose content changed and
    /// deleting shards no longer needed. Returns the number of write requests.
    pub async fn save(
        &self,
        inventory: &Inventory,
        stored: &StoredShards,
    ) -> Result<u64, InventoryError> {
        let shards = render(inventory, MAX_SHARD_BYTES)?;
        let revision = inventory.revision.clone().unwrap_or_default();
        let mut writes = 0;
        let mut wanted = BTreeSet::new();
        for (index, entries) in shards.iter().enumerate() {
            let name = format!("{}-{index}", self.name);
            let data = BTreeMap::from([
                (REVISION_KEY.to_owned(), revision.clone()),
                (ENTRIES_KEY.to_owned(), entries.clone()),
            ]);
            wanted.insert(name.clone());
            if stored.shards.get(&name) == Some(&data) {
                continue;
            }
            let body = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": { SHARD_LABEL: self.name },
                },
                "data": data,
            });
            writes += 1;
            self.api
                .patch(
                    &name,
                    &PatchParams::apply(INVENTORY_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
                .map_err(|source| self.write_error(&name, source))?;
        }
        for name in stored.shards.keys().filter(|name| !wanted.contains(*name)) {
            writes += 1;
            match self.api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(source) => return Err(self.write_error(name, source)),
            }
        }
        Ok(writes)
    }

    fn write_error(&self, name: &str, source: kube::Error) -> InventoryError {
        InventoryError::Write {
            namespace: self.namespace.clone(),
            name: name.to_owned(),
            source,
        }
    }
}

/// Orders shard names numerically (`-10` after `-9`); unparsable last.
fn shard_index(name: &str) -> usize {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

fn dash_if_empty(value: &str) -> &str {
    if value.is_empty() { "-" } else { value }
}

fn empty_if_dash(value: &str) -> String {
    if value == "-" {
        String::new()
    } else {
        value.to_owned()
    }
}

/// The entries' text, split into shards of at most `budget` bytes.
/// An empty inventory is one empty shard, so the revision is still recorded.
pub(crate) fn render(inventory: &Inventory, budget: usize) -> Result<Vec<String>, InventoryError> {
    let mut shards = vec![String::new()];
    for (object, entry) in &inventory.entries {
        let line = format!(
            "{} {} {} @{} {object}\n",
            dash_if_empty(&entry.hash),
            dash_if_empty(&entry.fields),
            dash_if_empty(&entry.resource_version),
            encode_field(&entry.source),
        );
        if line.len() > budget {
            return Err(InventoryError::EntryTooLarge(object.clone()));
        }
        let fits = shards
            .last()
            .is_some_and(|shard| shard.len() + line.len() <= budget);
        if fits {
            if let Some(shard) = shards.last_mut() {
                shard.push_str(&line);
            }
        } else {
            shards.push(line);
        }
    }
    Ok(shards)
}

/// Parses a shard's entries into `into`; `Err((line, message))` on the first
/// malformed line.
pub(crate) fn parse_entries(
    text: &str,
    into: &mut BTreeMap<ObjectRef, InventoryEntry>,
) -> Result<(), (usize, String)> {
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut parts = line.splitn(4, ' ');
        let (Some(hash), Some(fields), Some(rv), Some(mut object)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err((
                index + 1,
                "expected `<hash> <fields> <resourceVersion> <object>`".to_owned(),
            ));
        };
        let mut source = String::new();
        if let Some(rest) = object.strip_prefix('@') {
            let Some((encoded, reference)) = rest.split_once(' ') else {
                return Err((index + 1, "a source without an object".to_owned()));
            };
            source = decode_field(encoded);
            object = reference;
        }
        let object: ObjectRef = object.parse().map_err(|e| (index + 1, format!("{e}")))?;
        into.insert(
            object,
            InventoryEntry {
                hash: empty_if_dash(hash),
                fields: empty_if_dash(fields),
                resource_version: empty_if_dash(rv),
                source,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(i: usize) -> ObjectRef {
        format!("apps/v1 Deployment team-{}/web-{i:05}", i % 7)
            .parse()
            .expect("valid reference")
    }

    fn inventory(n: usize) -> Inventory {
        let mut inventory = Inventory {
            revision: Some("abc".to_owned()),
            ..Inventory::default()
        };
        for i in 0..n {
            inventory.entries.insert(
                object(i),
                InventoryEntry {
                    hash: "a".repeat(64),
                    fields: "b".repeat(16),
                    resource_version: (1_000_000 + i).to_string(),
                    source: format!("apps/web {i}.yaml:{} (kustomization overlays/prod)", i + 1),
                },
            );
        }
        inventory
    }

    #[test]
    fn ten_thousand_entries_fit_in_shards_under_the_budget_and_round_trip() {
        let inventory = inventory(10_000);
        let shards = render(&inventory, MAX_SHARD_BYTES).expect("renders");
        assert!(shards.len() >= 2, "{} shards", shards.len());
        assert!(shards.iter().all(|shard| shard.len() <= MAX_SHARD_BYTES));
        let mut parsed = BTreeMap::new();
        for shard in &shards {
            parse_entries(shard, &mut parsed).expect("parses");
        }
        assert_eq!(parsed, inventory.entries);
    }

    #[test]
    fn empty_fields_round_trip_and_garbage_is_rejected() {
        let mut inventory = inventory(1);
        if let Some(entry) = inventory.entries.values_mut().next() {
            entry.fields.clear();
            entry.resource_version.clear();
        }
        let shards = render(&inventory, MAX_SHARD_BYTES).expect("renders");
        let mut parsed = BTreeMap::new();
        parse_entries(&shards[0], &mut parsed).expect("parses");
        assert_eq!(parsed, inventory.entries);
        assert_eq!(
            parse_entries("nonsense\n", &mut parsed).map_err(|e| e.0),
            Err(1)
        );
    }

    #[test]
    fn a_line_written_before_sources_existed_still_reads() {
        let mut parsed = BTreeMap::new();
        parse_entries("h f 7 apps/v1 Deployment shop/web\n", &mut parsed).expect("parses");
        let (object, entry) = parsed.into_iter().next().expect("one entry");
        assert_eq!(object.to_string(), "apps/v1 Deployment shop/web");
        assert_eq!(
            (entry.resource_version.as_str(), entry.source.as_str()),
            ("7", "")
        );
    }

    #[test]
    fn shard_names_sort_numerically() {
        assert!(shard_index("inv-9") < shard_index("inv-10"));
    }
}
