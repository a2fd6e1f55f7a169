//! A rolling restart, the deploy every team does daily: each service replica in turn is taken out of
//! the balancer, left to finish what it has in flight, stopped cleanly (SIGTERM), started again,
//! given its modes back, and put back in; only once the balancer has let it in is the next one taken
//! out. It happens while the phase's load runs, so the samples show what clients saw of it.

use tokio_util::sync::CancellationToken;

use super::{Fault, FaultError, FaultTimeline, around_fault, with_fault};
use crate::env::Lab;
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
