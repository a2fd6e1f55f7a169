//! What the virtual users do; an experiment's `load.mix` weighs them.

closed_set::closed_set! {
    /// A scenario of the load generator.
    pub enum Scenario, "scenario" {
        Browse = "browse": "the product list and product pages",
        Availability = "availability": "stock levels of products",
        Checkout = "checkout": "log in, then buy",
        History = "history": "log in, then read the order history",
        LoginProbe = "login_probe": "wrong-password logins, alternately for a seeded email and an unknown one (the timing attacker)",
    }
}

impl Scenario {
    /// Whether its users log in first and keep the session.
    pub fn logs_in(self) -> bool {
        matches!(self, Self::Checkout | Self::History)
    }
}

closed_set::closed_set! {
    /// When the load's users begin their scenarios' own requests (`load.start`).
    pub enum Start, "start" {
        Staggered = "staggered": "each user as soon as its login is answered, the logins and the first requests interleaved on the schedule",
        Together = "together": "no user before every user is past its login: the schedule's first request after the logins finds the whole crowd there, as at a sale's opening",
    }
}
