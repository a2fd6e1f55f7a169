//! How `fortress explore` classes what one fault schedule did to the lab.

closed_set::closed_set! {
    /// What a trial of a fault schedule showed, worst first.
    pub enum Class, "class" {
        Broken = "broken": "an invariant was violated: an order lost, a unit oversold, a payment or an email twice",
        Degraded = "degraded": "every invariant held, but the objective (p99 from the intended send, errors) broke",
        Untouched = "untouched": "no evidence that the faults touched the system: nothing was measured",
        NotInjected = "not_injected": "a fault could not be injected (the lab refused it: a flush of a stopped Redis): nothing was tried, and the search went on",
        Harmless = "harmless": "the invariants and the objective held",
    }
}
