//! The fake API server's object store: a resourceVersion counter, the
//! objects per resource, and a bounded event history for watches.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

/// Events kept for watches that resume from an older resourceVersion.
pub const HISTORY: usize = 10_000;

/// The resources the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    Services,
    EndpointSlices,
    ConfigMaps,
}

impl Resource {
    pub fn from_plural(group_path: &str, plural: &str) -> Option<Self> {
        match (group_path, plural) {
            ("api/v1", "services") => Some(Self::Services),
            ("apis/discovery.k8s.io/v1", "endpointslices") => Some(Self::EndpointSlices),
            ("api/v1", "configmaps") => Some(Self::ConfigMaps),
            _ => None,
        }
    }

    pub fn from_kind(kind: &str) -> Option<Self> {
        match kind {
            "Service" => Some(Self::Services),
            "EndpointSlice" => Some(Self::EndpointSlices),
            "ConfigMap" => Some(Self::ConfigMaps),
            _ => None,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Self::Services => "Service",
            Self::EndpointSlices => "EndpointSlice",
            Self::ConfigMaps => "ConfigMap",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Self::Services | Self::ConfigMaps => "v1",
            Self::EndpointSlices => "discovery.k8s.io/v1",
        }
    }
}

/// One watch event as stored (and sent as a JSON line).
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub object: Value,
}

impl WatchEvent {
    pub fn line(&self) -> String {
        format!("{}\n", json!({"type": self.kind, "object": self.object}))
    }
}

/// Namespace/name filter of a request.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    /// From `fieldSelector=metadata.name=X`.
    pub name: Option<String>,
}

impl Filter {
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == namespace)
            && self.name.as_deref().is_none_or(|n| n == name)
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub rv: u64,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    pub objects: BTreeMap<Resource, BTreeMap<(String, String), Value>>,
    pub history: VecDeque<WatchEvent>,
}

impl State {
    /// Stores `object` (its kind picks the resource) and returns the event.
    pub fn apply(&mut self, mut object: Value) -> WatchEvent {
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let resource = Resource::from_kind(&kind)
            .unwrap_or_else(|| panic!("fake API: unsupported kind {kind:?}"));
        object["apiVersion"] = json!(resource.api_version());
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        object["metadata"]["namespace"] = json!(namespace);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("fake API: object without a name")
            .to_string();
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let map = self.objects.entry(resource).or_default();
        let kind = match map.insert((namespace.clone(), name.clone()), object.clone()) {
            Some(_) => "MODIFIED",
            None => "ADDED",
        };
        self.record(WatchEvent {
            rv: self.rv,
            resource,
            namespace,
            name,
            kind,
            object,
        })
    }

    pub fn delete(
        &mut self,
        resource: Resource,
        namespace: &str,
        name: &str,
    ) -> Option<WatchEvent> {
        let mut object = self
            .objects
            .get_mut(&resource)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        Some(self.record(WatchEvent {
            rv: self.rv,
            resource,
            namespace: namespace.to_string(),
            name: name.to_string(),
            kind: "DELETED",
            object,
        }))
    }

    fn record(&mut self, event: WatchEvent) -> WatchEvent {
        if self.history.len() == HISTORY
            && let Some(old) = self.history.pop_front()
        {
            self.compacted = self.compacted.max(old.rv);
        }
        self.history.push_back(event.clone());
        event
    }

    /// Objects of a list request, in key order. Borrowed: a paged list
    /// copies only its page (a 50k-object list is 100 pages).
    pub fn list(&self, resource: Resource, filter: &Filter) -> Vec<&Value> {
        self.objects
            .get(&resource)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((ns, name), _)| filter.matches(ns, name))
            .map(|(_, v)| v)
            .collect()
    }

    /// Events after `rv` for a resuming watch.
    pub fn since(&self, resource: Resource, filter: &Filter, rv: u64) -> Vec<WatchEvent> {
        self.history
            .iter()
            .filter(|e| {
                e.rv > rv && e.resource == resource && filter.matches(&e.namespace, &e.name)
            })
            .cloned()
            .collect()
    }
}
