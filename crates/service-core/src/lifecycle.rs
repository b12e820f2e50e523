//! Service lifecycle: the [`ServiceContext`] handed to `run`, readiness, and the run-group.
//!
//! The run-group follows oklog/run as Thanos uses it: every long-running loop is an actor (a
//! future); the first actor to finish, successfully or not, cancels the shared
//! [`CancellationToken`], and the group then waits for every other actor to return.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use prometheus::Registry;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{BoxError, Error, Result};

/// What every service's `run` receives: the metric registry, the shutdown token and the
/// readiness handle.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    /// The registry `/metrics` serves. Register every metric here; there is no global registry.
    pub registry: Registry,
    /// Cancelled when the process must stop (signal, or an actor of the run-group finished).
    pub shutdown: CancellationToken,
    /// Flip to ready once the service can answer (initial sync done, index built).
    pub readiness: Readiness,
}

impl ServiceContext {
    /// A context with a fresh registry, token and not-ready readiness. The binary-facing helper
    /// ([`crate::service_main`]) builds one; tests may too.
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            shutdown: CancellationToken::new(),
            readiness: Readiness::new(),
        }
    }
}

impl Default for ServiceContext {
    fn default() -> Self {
        Self::new()
    }
}

/// Readiness of the service, observed by `/-/ready` and the gRPC health service.
#[derive(Debug, Clone)]
pub struct Readiness {
    state: Arc<watch::Sender<ReadinessState>>,
}

/// The readiness state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadinessState {
    /// Not ready, with the reason `/-/ready` reports.
    NotReady(String),
    /// Ready to serve.
    Ready,
}

impl Readiness {
    /// Starts not ready ("starting").
    pub fn new() -> Self {
        let (sender, _receiver) = watch::channel(ReadinessState::NotReady("starting".to_owned()));
        Self {
            state: Arc::new(sender),
        }
    }

    /// Marks the service ready.
    pub fn set_ready(&self) {
        self.state.send_replace(ReadinessState::Ready);
    }

    /// Marks the service not ready, with a reason shown by `/-/ready`.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.state
            .send_replace(ReadinessState::NotReady(reason.into()));
    }

    /// Whether the service is ready now.
    pub fn is_ready(&self) -> bool {
        *self.state.borrow() == ReadinessState::Ready
    }

    /// The current state.
    pub fn state(&self) -> ReadinessState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change, for components that mirror readiness (gRPC health).
    pub fn subscribe(&self) -> watch::Receiver<ReadinessState> {
        self.state.subscribe()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

type Actor = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A group of actors that live and die together.
///
/// ```no_run
/// # async fn demo(ctx: service_core::ServiceContext) -> Result<(), service_core::Error> {
/// let mut group = service_core::RunGroup::new(ctx.shutdown.clone());
/// let token = ctx.shutdown.clone();
/// group.add("ticker", async move {
///     token.cancelled().await;
///     Ok::<(), std::io::Error>(())
/// });
/// group.run().await
/// # }
/// ```
pub struct RunGroup {
    shutdown: CancellationToken,
    actors: Vec<(String, Actor)>,
}

impl std::fmt::Debug for RunGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.actors.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("RunGroup").field("actors", &names).finish()
    }
}

impl RunGroup {
    /// A group whose actors watch `shutdown` (usually [`ServiceContext::shutdown`]).
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            actors: Vec::new(),
        }
    }

    /// The token this group cancels when its first actor finishes.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Adds an actor. It must return soon after the group's token is cancelled.
    pub fn add<F, E>(&mut self, name: impl Into<String>, actor: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let boxed: Actor = Box::pin(async move { actor.await.map_err(Into::into) });
        self.actors.push((name.into(), boxed));
    }

    /// Runs every actor on the current runtime. The first to finish cancels the token; returns
    /// once all have returned, with the first error seen (the one that caused the shutdown,
    /// when an actor failed).
    pub async fn run(self) -> Result<()> {
        let Self { shutdown, actors } = self;
        let mut tasks = JoinSet::new();
        let mut names = Vec::with_capacity(actors.len());
        for (index, (name, actor)) in actors.into_iter().enumerate() {
            names.push(name);
            tasks.spawn(async move { (index, actor.await) });
        }
        let mut first_error = None;
        while let Some(joined) = tasks.join_next().await {
            let outcome = match joined {
                Ok((index, Ok(()))) => {
                    tracing::debug!(actor = %names[index], "actor finished");
                    Ok(())
                }
                Ok((index, Err(source))) => Err(Error::Actor {
                    actor: names[index].clone(),
                    source,
                }),
                Err(join_error) => Err(Error::ActorPanicked {
                    actor: join_error.to_string(),
                }),
            };
            if !shutdown.is_cancelled() {
                tracing::info!("stopping all components");
                shutdown.cancel();
            }
            if let Err(error) = outcome {
                tracing::error!(error = %crate::status::error_chain(&error), "component failed");
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives (returns the signal's name) or when `shutdown` is
/// cancelled (returns `None`).
pub async fn wait_for_signal(shutdown: &CancellationToken) -> Result<Option<&'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(Error::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::Signal)?;
    tokio::select! {
        _ = terminate.recv() => Ok(Some("SIGTERM")),
        _ = interrupt.recv() => Ok(Some("SIGINT")),
        () = shutdown.cancelled() => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn first_actor_to_finish_stops_the_others() {
        let token = CancellationToken::new();
        let mut group = RunGroup::new(token.clone());
        let saw_cancel = Arc::new(AtomicBool::new(false));
        let waiter_token = token.clone();
        let waiter_flag = Arc::clone(&saw_cancel);
        group.add("waiter", async move {
            waiter_token.cancelled().await;
            waiter_flag.store(true, Ordering::SeqCst);
            Ok::<(), std::io::Error>(())
        });
        group.add("quick", async { Ok::<(), std::io::Error>(()) });
        tokio::time::timeout(Duration::from_secs(5), group.run())
            .await
            .unwrap()
            .unwrap();
        assert!(token.is_cancelled());
        assert!(saw_cancel.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn failing_actor_error_is_returned() {
        let token = CancellationToken::new();
        let mut group = RunGroup::new(token.clone());
        let waiter_token = token.clone();
        group.add("waiter", async move {
            waiter_token.cancelled().await;
            Ok::<(), std::io::Error>(())
        });
        group.add("broken", async {
            Err(std::io::Error::other("disk on fire"))
        });
        let error = group.run().await.unwrap_err();
        assert_eq!(crate::status::error_chain(&error), "broken: disk on fire");
        assert!(token.is_cancelled());
    }

    #[tokio::test]
    async fn external_cancel_stops_the_group() {
        let token = CancellationToken::new();
        let mut group = RunGroup::new(token.clone());
        for name in ["a", "b"] {
            let actor_token = token.clone();
            group.add(name, async move {
                actor_token.cancelled().await;
                Ok::<(), std::io::Error>(())
            });
        }
        let running = tokio::spawn(group.run());
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }

    #[test]
    fn readiness_transitions() {
        let readiness = Readiness::new();
        let watcher = readiness.subscribe();
        assert!(!readiness.is_ready());
        readiness.set_ready();
        assert!(readiness.is_ready());
        assert_eq!(*watcher.borrow(), ReadinessState::Ready);
        readiness.set_not_ready("shutting down");
        assert_eq!(
            readiness.state(),
            ReadinessState::NotReady("shutting down".to_owned())
        );
    }
}
