//! Which file's definition of an object is served. The same Service (or
//! EndpointSlice) may be written in two files; the one in the file that
//! sorts first by path wins, whatever order the files were read in, and
//! the duplicate is logged and counted. When the winning file drops the
//! object, the next file's definition takes over.
//!
//! The index holds the objects in the `Arc`s the store holds them in, and
//! each file's path once, so it adds pointers, not a copy of the cluster
//! (docs/design.md#records-path, Memory).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::cluster::model::{Keyed, ObjectKey, ServiceInfo, SliceInfo};

/// An object a manifest defines.
pub trait Defined: Keyed + Clone + PartialEq {
    /// For logs: `Service` or `EndpointSlice`.
    const KIND: &'static str;
}

impl Defined for ServiceInfo {
    const KIND: &'static str = "Service";
}

impl Defined for SliceInfo {
    const KIND: &'static str = "EndpointSlice";
}

/// A change of the object served under a key: the new one, or None when no
/// file defines it any more.
pub type Served<T> = (ObjectKey, Option<Arc<T>>);

/// One file's definition of an object.
type Definition<T> = (Arc<Path>, Arc<T>);

/// The files defining one key, sorted by path: almost always one, held
/// inline, the others behind one pointer (a set slot of 32 bytes, not 48).
/// A set entry under the object's own key, so the index adds no copy of
/// the key either.
struct Definitions<T> {
    first: Definition<T>,
    #[expect(
        clippy::box_collection,
        reason = "one thin pointer in every slot for a list that is almost always absent"
    )]
    rest: Option<Box<Vec<Definition<T>>>>,
}

impl<T> Definitions<T> {
    fn into_vec(self) -> Vec<Definition<T>> {
        let rest = self.rest.map_or_else(Vec::new, |rest| *rest);
        let mut all = Vec::with_capacity(1 + rest.len());
        all.push(self.first);
        all.extend(rest);
        all
    }

    fn from_vec(mut all: Vec<Definition<T>>) -> Option<Self> {
        if all.is_empty() {
            return None;
        }
        let rest = all.split_off(1);
        let first = all.pop()?;
        let rest = (!rest.is_empty()).then(|| Box::new(rest));
        Some(Self { first, rest })
    }
}

impl<T: Keyed> std::hash::Hash for Definitions<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.first.1.key().hash(state)
    }
}

impl<T: Keyed> PartialEq for Definitions<T> {
    fn eq(&self, other: &Self) -> bool {
        self.first.1.key() == other.first.1.key()
    }
}

impl<T: Keyed> Eq for Definitions<T> {}

impl<T: Keyed> std::borrow::Borrow<ObjectKey> for Definitions<T> {
    fn borrow(&self) -> &ObjectKey {
        self.first.1.key()
    }
}

/// Every definition of one kind of object, by key, then by file. Bounded by
/// the files loaded (`--manifests-max-files`) and what they hold.
pub struct Index<T> {
    by_key: HashSet<Definitions<T>>,
    /// Keys defined in more than one file.
    duplicates: usize,
}

impl<T: Defined> Default for Index<T> {
    fn default() -> Self {
        Self {
            by_key: HashSet::new(),
            duplicates: 0,
        }
    }
}

impl<T: Defined> Index<T> {
    fn served(&self, key: &ObjectKey) -> Option<&Arc<T>> {
        self.by_key.get(key).map(|defs| &defs.first.1)
    }

    /// Keys defined in more than one file now.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// `path` now defines `new` instead of `old` (what it defined before).
    /// Returns what is served differently, and how many keys became
    /// duplicates.
    pub fn set_file(
        &mut self,
        path: &Arc<Path>,
        old: &[Arc<T>],
        new: &[Arc<T>],
    ) -> (Vec<Served<T>>, usize) {
        let definitions: HashMap<&ObjectKey, &Arc<T>> = new.iter().map(|o| (o.key(), o)).collect();
        let mut keys: Vec<&ObjectKey> = old.iter().chain(new).map(|o| o.key()).collect();
        keys.sort();
        keys.dedup();
        let mut changes = Vec::new();
        let mut new_duplicates = 0;
        for key in keys {
            let before = self.served(key).cloned();
            let definition = definitions.get(key).copied();
            let mut files = self
                .by_key
                .take(key)
                .map(Definitions::into_vec)
                .unwrap_or_default();
            let was_duplicate = files.len() > 1;
            let at = files.binary_search_by(|(p, _)| (**p).cmp(path));
            match (definition, at) {
                (Some(object), Ok(i)) => files[i].1 = object.clone(),
                (Some(object), Err(i)) => files.insert(i, (path.clone(), object.clone())),
                (None, Ok(i)) => {
                    files.remove(i);
                }
                (None, Err(_)) => {}
            }
            let is_duplicate = files.len() > 1;
            if is_duplicate && !was_duplicate {
                new_duplicates += 1;
                let winner = &files.first().expect("more than one").0;
                tracing::warn!(kind = T::KIND, object = %key, files = files.len(), winner = %winner.display(),
                    "object defined in more than one manifest file: the first file by path wins, the others are ignored");
            }
            match (was_duplicate, is_duplicate) {
                (false, true) => self.duplicates += 1,
                (true, false) => self.duplicates -= 1,
                _ => {}
            }
            let after = files.first().map(|(_, object)| object.clone());
            if let Some(defs) = Definitions::from_vec(files) {
                self.by_key.insert(defs);
            }
            if after != before {
                changes.push((key.clone(), after));
            }
        }
        (changes, new_duplicates)
    }
}

/// `objects` with one definition per key, the first in the file; the
/// number dropped is returned too.
pub fn first_per_key<T: Defined>(objects: Vec<T>) -> (Vec<T>, usize) {
    let mut seen = std::collections::HashSet::new();
    let before = objects.len();
    let kept: Vec<T> = objects
        .into_iter()
        .filter(|o| seen.insert(o.key().clone()))
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::model::ServiceKind;

    fn svc(name: &str, ip: &str) -> Arc<ServiceInfo> {
        Arc::new(ServiceInfo {
            key: ObjectKey::new("default", name),
            kind: ServiceKind::ClusterIp([ip.parse().unwrap()].into()),
            ports: Box::default(),
            publish_not_ready: false,
        })
    }

    fn served(changes: &[Served<ServiceInfo>]) -> Vec<(String, Option<String>)> {
        changes
            .iter()
            .map(|(k, s)| (k.to_string(), s.as_ref().map(|s| format!("{:?}", s.kind))))
            .collect()
    }

    #[test]
    fn the_first_file_by_path_wins_whatever_the_order() {
        let (a, b): (Arc<Path>, Arc<Path>) =
            (Path::new("/m/a.yaml").into(), Path::new("/m/b.yaml").into());
        let (a, b) = (&a, &b);
        let mut index = Index::default();
        // b is read first, then a defines the same Service.
        let (changes, dup) = index.set_file(b, &[], &[svc("web", "10.0.0.2")]);
        assert_eq!((changes.len(), dup), (1, 0));
        let (changes, dup) = index.set_file(a, &[], &[svc("web", "10.0.0.1")]);
        assert_eq!(dup, 1);
        assert_eq!(changes[0].1, Some(svc("web", "10.0.0.1")), "a wins");
        assert_eq!(index.duplicates(), 1);
        // b changes its copy: nothing served changes.
        let (changes, _) = index.set_file(b, &[svc("web", "10.0.0.2")], &[svc("web", "10.0.0.3")]);
        assert!(changes.is_empty());
        // a drops it: b's takes over; then b drops it: gone.
        let (changes, _) = index.set_file(a, &[svc("web", "10.0.0.1")], &[]);
        assert_eq!(changes[0].1, Some(svc("web", "10.0.0.3")));
        assert_eq!(index.duplicates(), 0);
        let (changes, _) = index.set_file(b, &[svc("web", "10.0.0.3")], &[]);
        assert_eq!(served(&changes), [("default/web".to_string(), None)]);
        assert!(index.by_key.is_empty());
    }

    #[test]
    fn only_what_changed_is_reported() {
        let a: Arc<Path> = Path::new("/m/a.yaml").into();
        let a = &a;
        let mut index = Index::default();
        let old = [svc("x", "10.0.0.1"), svc("y", "10.0.0.2")];
        index.set_file(a, &[], &old);
        let new = [
            svc("x", "10.0.0.1"),
            svc("y", "10.0.0.9"),
            svc("z", "10.0.0.3"),
        ];
        let (changes, _) = index.set_file(a, &old, &new);
        let names: Vec<String> = changes.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(names, ["default/y", "default/z"]);
    }

    #[test]
    fn duplicates_within_a_file_keep_the_first() {
        let plain = |ip| ServiceInfo::clone(&svc("w", ip));
        let (kept, dropped) = first_per_key(vec![plain("10.0.0.1"), plain("10.0.0.2")]);
        assert_eq!((kept, dropped), (vec![plain("10.0.0.1")], 1));
    }
}
