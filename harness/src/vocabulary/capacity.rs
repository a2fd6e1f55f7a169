//! What a capacity search measures: the conditions a rate is held under, and the figures it finds.

closed_set::closed_set! {
    /// The conditions a capacity search holds the objective under, one search each.
    pub enum Condition, "condition" {
        Steady = "steady": "no fault: the service as it runs every day",
        Fault = "fault": "the experiment's fault held injected for the whole search",
    }
}

closed_set::closed_set! {
    /// A figure a capacity search finds, which a capacity prediction may claim.
    pub enum CapacityFigure, "capacity figure" {
        Capacity = "capacity": "the highest arrival rate (requests/s) that held the objective, steady",
        CapacityUnderFault = "capacity_under_fault": "the highest arrival rate that held the objective with the fault injected",
        CapacityKept = "capacity_kept": "capacity under fault over capacity: the share of its load the service keeps when the fault strikes",
    }
}

impl CapacityFigure {
    /// The searches the figure needs.
    pub fn needs(self) -> &'static [Condition] {
        match self {
            Self::Capacity => &[Condition::Steady],
            Self::CapacityUnderFault => &[Condition::Fault],
            Self::CapacityKept => &[Condition::Steady, Condition::Fault],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_parse_by_name_and_say_which_searches_they_need() {
        assert_eq!(
            "capacity_kept".parse::<CapacityFigure>().unwrap(),
            CapacityFigure::CapacityKept
        );
        assert!("knee".parse::<CapacityFigure>().is_err());
        assert_eq!(CapacityFigure::CapacityKept.needs().len(), 2);
        assert_eq!("fault".parse::<Condition>().unwrap(), Condition::Fault);
    }
}
