//! [`ServerBoard`]: the model servers a process runs, by the name of what runs each (a
//! workflow's `serve` node), so a dashboard in the same process shows their figures. A server
//! shown again under the same name (a retried node) replaces the old one; a server that
//! stopped stays shown with its final figures.

use std::sync::{Arc, Mutex};

use super::ServingState;

/// The model servers of a process, by name, in the order they were first shown.
#[derive(Debug, Default)]
pub struct ServerBoard {
    servers: Mutex<Vec<(String, Arc<ServingState>)>>,
}

impl ServerBoard {
    /// Shows `state` under `name` from now on.
    pub fn show(&self, name: &str, state: Arc<ServingState>) {
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        match servers.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = state,
            None => servers.push((name.to_string(), state)),
        }
    }

    /// The servers shown: (name, state).
    pub fn servers(&self) -> Vec<(String, Arc<ServingState>)> {
        self.servers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn a_server_shown_again_under_its_name_replaces_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path()).unwrap();
        let state = || Arc::new(ServingState::new(registry.clone(), vec![], None, false));
        let board = ServerBoard::default();
        let (a, b) = (state(), state());
        board.show("serve", a);
        board.show("other", state());
        board.show("serve", b.clone());
        let shown = board.servers();
        assert_eq!(shown.len(), 2);
        assert_eq!(shown[0].0, "serve");
        assert!(Arc::ptr_eq(&shown[0].1, &b));
    }
}
