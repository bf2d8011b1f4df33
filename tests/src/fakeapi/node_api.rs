//! The fake API server inside a lab's node namespace, where the agent runs.

use std::ops::Deref;

use super::FakeApi;
use crate::lab::Netns;

/// The fake API server listening on 127.0.0.1 inside a namespace, served
/// by a runtime of its own (the e2e tests themselves are synchronous).
pub struct NodeApi {
    // Field order is drop order: the server stops before its runtime.
    api: FakeApi,
    _runtime: tokio::runtime::Runtime,
}

impl NodeApi {
    pub fn start(node: &Netns) -> Self {
        let (api, runtime) = node.serve(FakeApi::start);
        Self {
            api,
            _runtime: runtime,
        }
    }
}

impl Deref for NodeApi {
    type Target = FakeApi;

    fn deref(&self) -> &FakeApi {
        &self.api
    }
}
