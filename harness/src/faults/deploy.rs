//! A rolling restart, the deploy every team does daily: each service replica in turn is taken out of
//! the balancer, left to finish what it has in flight, stopped cleanly (SIGTERM), started again,
//! given its modes back, and put back in; only once the balancer has let it in is the next one taken
//! out. It happens while the phase's load runs, so the samples show what clients saw of it.

use tokio_util::sync::CancellationToken;

use super::{Fault, FaultError, FaultTimeline, OnStop, Scope, Site, around_fault, scope, with_fault};
use crate::env::Lab;
use crate::env::target::lab::TargetLab;
use crate::vocabulary::Role;

/// Restarts every replica in turn, each step two faults of its own on the timeline (`take service-2
/// out of the balancer` around `stop service-2`). Ctrl-C ends it once the replica being restarted is
/// started again and back in.
pub(super) async fn rolling_restart(
    lab: &Lab,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
) -> Result<(), FaultError> {
    for replica in lab.replicas() {
        if stop.is_cancelled() {
            return Err(FaultError::Interrupted);
        }
        let restart = Fault::Stop(Role::Service(replica));
        let restarted = with_fault(lab, timeline, stop, &restart, async {});
        // Boxed: the steps are run by the same functions that run the deploy.
        Box::pin(around_fault(
            lab,
            timeline,
            stop,
            &Fault::TakeOut(replica),
            restarted,
        ))
        .await??;
    }
    Ok(())
}

/// A user's target's deploy: each replica of its balanced entry `service` in turn taken out of the
/// balancer around a clean stop and start, as `rolling_restart` does in the reference lab.
pub(super) async fn rolling_restart_of(
    lab: &TargetLab,
    service: &str,
    timeline: &FaultTimeline,
    stop: &CancellationToken,
) -> Result<(), FaultError> {
    let at = Scope {
        site: Site::Target(lab),
        timeline,
        stop,
    };
    for replica in 1..=lab.entry_replicas() {
        if stop.is_cancelled() {
            return Err(FaultError::Interrupted);
        }
        let service = service.to_owned();
        let restart = Fault::StopReplica {
            service: service.clone(),
            replica,
        };
        let restarted = scope(at, &restart, async {}, OnStop::Await);
        let take_out = Fault::TakeOutOf { service, replica };
        Box::pin(scope(at, &take_out, restarted, OnStop::Await)).await??;
    }
    Ok(())
}
