//! The apply layer: brings one kind of rendered object in line with the cluster using server-side
//! apply (field manager `weft-operator`, forced), skipping objects that are already in sync so a
//! steady-state reconcile makes no writes, and deleting labelled objects no longer rendered.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::drift::first_difference;
use crate::labels::{FIELD_MANAGER, managed_selector};
use crate::render::RENDERED_HASH_ANNOTATION;

/// Why applying failed, per API step.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("listing {kind} objects managed by the operator: {source}")]
    List {
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name}, which is no longer rendered: {source}")]
    Delete {
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("encoding {kind} {name} as JSON: {source}")]
    Encode {
        kind: String,
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A hand edit the operator reverted: which field and, when known, which field manager made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub field: String,
    pub manager: Option<String>,
}

/// What applying did to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    /// The rendered object changed (new configuration or operator version).
    Updated,
    /// An identical object made by someone else now carries the operator's labels.
    Adopted,
    Reverted(Drift),
    Deleted,
}

/// One write the apply layer made, for logs, Events and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub kind: String,
    pub name: String,
    pub change: Change,
}

impl Write {
    pub fn describe(&self) -> String {
        match &self.change {
            Change::Created => format!("created {} {}", self.kind, self.name),
            Change::Updated => format!("updated {} {}", self.kind, self.name),
            Change::Adopted => {
                format!("adopted the identical existing {} {}", self.kind, self.name)
            }
            Change::Deleted => format!("deleted {} {} (no longer rendered)", self.kind, self.name),
            Change::Reverted(drift) => {
                let by = drift
                    .manager
                    .as_deref()
                    .map(|manager| format!(" (edited by field manager {manager:?})"))
                    .unwrap_or_default();
                format!(
                    "reverted a hand edit of {} {} at {}{by}",
                    self.kind, self.name, drift.field
                )
            }
        }
    }
}

/// The latest field manager other than the operator that touched `object`: the likely author of a
/// hand edit.
fn last_foreign_manager<K: Resource>(object: &K) -> Option<String> {
    object
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.manager.as_deref() != Some(FIELD_MANAGER))
        .max_by_key(|entry| entry.time.as_ref().map(|time| time.0))
        .and_then(|entry| entry.manager.clone())
}

fn rendered_hash<K: Resource>(object: &K) -> Option<&String> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(RENDERED_HASH_ANNOTATION)
}

/// Applies one kind of object. Namespaced kinds use [`Applier::namespaced`], cluster-scoped kinds
/// [`Applier::cluster`].
pub struct Applier<K> {
    api: Api<K>,
    kind: String,
}

impl<K> Applier<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    pub fn namespaced(client: Client, namespace: &str) -> Self
    where
        K: Resource<Scope = NamespaceResourceScope>,
    {
        Self::with_api(Api::namespaced(client, namespace))
    }

    pub fn cluster(client: Client) -> Self
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope>,
    {
        Self::with_api(Api::all(client))
    }

    fn with_api(api: Api<K>) -> Self {
        let kind = K::kind(&()).into_owned();
        Self { api, kind }
    }

    /// Every object of this kind the operator manages, by name.
    pub async fn list_managed(&self) -> Result<BTreeMap<String, K>, ApplyError> {
        let params = ListParams::default().labels(&managed_selector());
        let list = self
            .api
            .list(&params)
            .await
            .map_err(|source| ApplyError::List {
                kind: self.kind.clone(),
                source,
            })?;
        Ok(list
            .items
            .into_iter()
            .map(|item| (item.name_any(), item))
            .collect())
    }

    /// Applies every `desired` object that is missing or differs from the live one and deletes
    /// the managed objects of this kind that are not desired. Returns the live objects after the
    /// writes (desired ones only), and appends each write made to `writes`.
    pub async fn sync(&self, desired: &[K], writes: &mut Vec<Write>) -> Result<Vec<K>, ApplyError> {
        let mut live = self.list_managed().await?;
        let mut result = Vec::with_capacity(desired.len());
        for object in desired {
            let name = object.name_any();
            let current = live.remove(&name);
            let change = match &current {
                None => Some(Change::Created),
                Some(current) if rendered_hash(current) != rendered_hash(object) => {
                    Some(Change::Updated)
                }
                Some(current) => self.difference(object, current)?.map(|field| {
                    Change::Reverted(Drift {
                        field,
                        manager: last_foreign_manager(current),
                    })
                }),
            };
            match change {
                None => result.extend(current),
                Some(change) => {
                    result.push(self.apply(object).await?);
                    writes.push(Write {
                        kind: self.kind.clone(),
                        name,
                        change,
                    });
                }
            }
        }
        for (name, _) in live {
            self.delete(&name).await?;
            writes.push(Write {
                kind: self.kind.clone(),
                name,
                change: Change::Deleted,
            });
        }
        Ok(result)
    }

    fn difference(&self, desired: &K, live: &K) -> Result<Option<String>, ApplyError> {
        let encode = |object: &K| {
            serde_json::to_value(object).map_err(|source| ApplyError::Encode {
                kind: self.kind.clone(),
                name: object.name_any(),
                source,
            })
        };
        Ok(first_difference(&encode(desired)?, &encode(live)?))
    }

    /// Server-side applies `object` with the operator's field manager, taking over conflicting
    /// fields (the operator is the source of truth for what it renders).
    pub async fn apply(&self, object: &K) -> Result<K, ApplyError> {
        let name = object.name_any();
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api
            .patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(|source| ApplyError::Apply {
                kind: self.kind.clone(),
                name,
                source,
            })
    }

    /// Deletes `name`; an object that is already gone counts as deleted.
    pub async fn delete(&self, name: &str) -> Result<(), ApplyError> {
        let params = DeleteParams::foreground();
        match self.api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(ApplyError::Delete {
                kind: self.kind.clone(),
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// The names of this kind's managed objects still present (used while tearing down).
    pub async fn remaining(&self) -> Result<Vec<String>, ApplyError> {
        Ok(self.list_managed().await?.into_keys().collect())
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }
}
