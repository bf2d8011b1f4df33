//! Which file's definition of an object is served. The same Service (or
//! EndpointSlice) may be written in two files; the one in the file that
//! sorts first by path wins, whatever order the files were read in, and
//! the duplicate is logged and counted. When the winning file drops the
//! object, the next file's definition takes over.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::cluster::model::{ObjectKey, ServiceInfo, SliceInfo};

/// An object a manifest defines.
pub trait Defined: Clone + PartialEq {
    /// For logs: `Service` or `EndpointSlice`.
    const KIND: &'static str;
    fn key(&self) -> &ObjectKey;
}

impl Defined for ServiceInfo {
    const KIND: &'static str = "Service";
    fn key(&self) -> &ObjectKey {
        &self.key
    }
}

impl Defined for SliceInfo {
    const KIND: &'static str = "EndpointSlice";
    fn key(&self) -> &ObjectKey {
        &self.key
    }
}

/// A change of the object served under a key: the new one, or None when no
/// file defines it any more.
pub type Served<T> = (ObjectKey, Option<T>);

/// Every definition of one kind of object, by key, then by file. Bounded by
/// the files loaded (`--manifests-max-files`) and what they hold.
pub struct Index<T> {
    by_key: HashMap<ObjectKey, BTreeMap<PathBuf, T>>,
    /// Keys defined in more than one file.
    duplicates: usize,
}

impl<T: Defined> Default for Index<T> {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            duplicates: 0,
        }
    }
}

impl<T: Defined> Index<T> {
    fn served(&self, key: &ObjectKey) -> Option<&T> {
        self.by_key.get(key)?.values().next()
    }

    /// Keys defined in more than one file now.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// `path` now defines `new` instead of `old` (what it defined before).
    /// Returns what is served differently, and how many keys became
    /// duplicates.
    pub fn set_file(&mut self, path: &Path, old: &[T], new: &[T]) -> (Vec<Served<T>>, usize) {
        let mut keys: Vec<&ObjectKey> = old.iter().chain(new).map(T::key).collect();
        keys.sort();
        keys.dedup();
        let mut changes = Vec::new();
        let mut new_duplicates = 0;
        for key in keys {
            let before = self.served(key).cloned();
            let was_duplicate = self.by_key.get(key).is_some_and(|f| f.len() > 1);
            let definition = new.iter().find(|o| o.key() == key);
            let files = self.by_key.entry(key.clone()).or_default();
            match definition {
                Some(object) => {
                    files.insert(path.to_path_buf(), object.clone());
                }
                None => {
                    files.remove(path);
                }
            }
            let is_duplicate = files.len() > 1;
            if is_duplicate && !was_duplicate {
                new_duplicates += 1;
                let winner = files.keys().next().expect("more than one");
                tracing::warn!(kind = T::KIND, object = %key, files = files.len(), winner = %winner.display(),
                    "object defined in more than one manifest file: the first file by path wins, the others are ignored");
            }
            match (was_duplicate, is_duplicate) {
                (false, true) => self.duplicates += 1,
                (true, false) => self.duplicates -= 1,
                _ => {}
            }
            if files.is_empty() {
                self.by_key.remove(key);
            }
            let after = self.served(key);
            if after != before.as_ref() {
                changes.push((key.clone(), after.cloned()));
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

    fn svc(name: &str, ip: &str) -> ServiceInfo {
        ServiceInfo {
            key: ObjectKey::new("default", name),
            kind: ServiceKind::ClusterIp(vec![ip.parse().unwrap()]),
            ports: Vec::new(),
            publish_not_ready: false,
        }
    }

    fn served(changes: &[Served<ServiceInfo>]) -> Vec<(String, Option<String>)> {
        changes
            .iter()
            .map(|(k, s)| (k.to_string(), s.as_ref().map(|s| format!("{:?}", s.kind))))
            .collect()
    }

    #[test]
    fn the_first_file_by_path_wins_whatever_the_order() {
        let (a, b) = (Path::new("/m/a.yaml"), Path::new("/m/b.yaml"));
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
        let a = Path::new("/m/a.yaml");
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
        let (kept, dropped) = first_per_key(vec![svc("w", "10.0.0.1"), svc("w", "10.0.0.2")]);
        assert_eq!((kept, dropped), (vec![svc("w", "10.0.0.1")], 1));
    }
}
