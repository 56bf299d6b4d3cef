//! What a front end holds while it runs, in one place: the workspace, the models and knowledge
//! stores kept loaded between requests, and the table of this process's running jobs.

use std::sync::Arc;

use crate::chat::{Caches, ModelCache};
use crate::jobs::JobTable;
use crate::knowledge::KnowledgeCache;
use crate::workspace::Workspace;

/// The shared state of the use cases: cheap to clone (the stores and the job table are shared,
/// not copied), so a long job takes its own clone to the thread it runs on.
#[derive(Clone)]
pub struct Context {
    pub workspace: Workspace,
    /// Models kept loaded for answering (the two most recently used).
    pub models: Arc<ModelCache>,
    /// Knowledge bases' store and embedder.
    pub knowledge: Arc<KnowledgeCache>,
    /// The jobs this process runs, each with its own cancel token.
    pub jobs: Arc<JobTable>,
}

impl Context {
    /// A context on `workspace` with nothing loaded and no jobs.
    pub fn new(workspace: Workspace) -> Self {
        Context {
            workspace,
            models: Arc::default(),
            knowledge: Arc::default(),
            jobs: Arc::default(),
        }
    }

    /// The caches chat, evaluations and comparisons answer through.
    pub fn caches(&self) -> Caches<'_> {
        Caches {
            models: &self.models,
            knowledge: &self.knowledge,
        }
    }
}
