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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake API server");
        // The listening socket is created by the thread that polls `start`,
        // which has entered the node namespace; the server's tasks then run
        // on the runtime's workers, wherever they are.
        let api = node
            .enter(|| runtime.block_on(FakeApi::start()))
            .expect("enter the node namespace")
            .expect("start the fake API server");
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
