//! The order the search tries its schedules in. At each instant in turn: the space's singles, then
//! the pairs the lineage grew (a fault that sent traffic down a link the trial without faults left
//! unused, with each fault of that link), then the space's pairs. Pairs the lineage grows while an
//! instant runs join that instant's queue, and every later instant's. Every schedule is tried at
//! the first instant before any at the next, so a budget that runs out has tried each once before
//! any twice. Pure: tested without a lab.

use std::collections::VecDeque;

use super::schedule::Schedule;
use crate::faults::Fault;

/// Schedules waiting, by instant.
#[derive(Debug)]
pub struct Queue {
    instants: Vec<f64>,
    fault_seconds: f64,
    /// The instant being tried (an index into `instants`).
    instant: usize,
    singles: Vec<Vec<Fault>>,
    /// Every grown pair so far with its rank, in the order they are tried: by rank, then as found.
    grown: Vec<Ranked>,
    pairs: Vec<Vec<Fault>>,
    /// What is left of the current instant.
    now: Waiting,
}

/// A grown pair and its rank (`space::revealed_pairs`).
type Ranked = (usize, Vec<Fault>);

/// What is left of one instant, tried in this order.
#[derive(Debug, Default)]
struct Waiting {
    singles: VecDeque<Vec<Fault>>,
    grown: VecDeque<Ranked>,
    pairs: VecDeque<Vec<Fault>>,
}

impl Waiting {
    fn pop(&mut self) -> Option<Vec<Fault>> {
        (self.singles.pop_front())
            .or_else(|| self.grown.pop_front().map(|(_, pair)| pair))
            .or_else(|| self.pairs.pop_front())
    }

    fn iter(&self) -> impl Iterator<Item = &[Fault]> {
        (self.singles.iter().map(Vec::as_slice))
            .chain(self.grown.iter().map(|(_, pair)| pair.as_slice()))
            .chain(self.pairs.iter().map(Vec::as_slice))
    }
}

impl Queue {
    /// `singles` and `pairs` at each of `instants`, each fault window `fault_seconds` long.
    pub fn new(
        singles: Vec<Vec<Fault>>,
        pairs: Vec<Vec<Fault>>,
        instants: Vec<f64>,
        fault_seconds: f64,
    ) -> Self {
        let mut queue = Self {
            instants,
            fault_seconds,
            instant: 0,
            singles,
            grown: Vec::new(),
            pairs,
            now: Waiting::default(),
        };
        queue.fill();
        queue
    }

    /// The current instant's queue: everything, or nothing once past the last instant.
    fn fill(&mut self) {
        if self.instant >= self.instants.len() {
            self.now = Waiting::default();
            return;
        }
        self.now = Waiting {
            singles: self.singles.iter().cloned().collect(),
            grown: self.grown.iter().cloned().collect(),
            pairs: self.pairs.iter().cloned().collect(),
        };
    }

    /// The next schedule, or `None` when every instant is done.
    pub fn next(&mut self) -> Option<Schedule> {
        loop {
            let at_s = *self.instants.get(self.instant)?;
            if let Some(faults) = self.now.pop() {
                return Some(Schedule::new(faults, at_s, self.fault_seconds));
            }
            self.instant += 1;
            self.fill();
        }
    }

    /// Adds pairs the lineage grew (each with its rank): to the rest of this instant, among the
    /// grown pairs not yet tried, and to every later instant.
    pub fn grow(&mut self, pairs: Vec<Ranked>) {
        // Each list is kept by rank, then as found: a pair goes after every one of its rank or lower.
        for (rank, pair) in pairs {
            let at = self.grown.partition_point(|(r, _)| *r <= rank);
            self.grown.insert(at, (rank, pair.clone()));
            let at = self.now.grown.partition_point(|(r, _)| *r <= rank);
            self.now.grown.insert(at, (rank, pair));
        }
    }

    /// The faults of every schedule still waiting, this instant's and the later ones'.
    pub fn waiting(&self) -> Vec<&[Fault]> {
        let later = self.instants.len().saturating_sub(self.instant + 1);
        let every = (self.singles.iter())
            .chain(self.grown.iter().map(|(_, pair)| pair))
            .chain(self.pairs.iter())
            .map(Vec::as_slice);
        (self.now.iter())
            .chain((0..later).flat_map(|_| every.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocabulary::Role;

    fn tried(queue: &mut Queue) -> Vec<(String, f64)> {
        std::iter::from_fn(|| queue.next())
            .map(|s| {
                let faults: Vec<String> = s.faults.iter().map(ToString::to_string).collect();
                (faults.join(" + "), s.at_s)
            })
            .collect()
    }

    #[test]
    fn every_schedule_is_tried_at_the_first_instant_before_any_at_the_next() {
        let (pause, kill) = (Fault::Pause(Role::Mail), Fault::Kill(Role::Redis));
        let mut queue = Queue::new(
            vec![vec![pause.clone()], vec![kill.clone()]],
            vec![vec![pause.clone(), kill.clone()]],
            vec![2.0, 1.0],
            2.0,
        );
        assert_eq!(queue.waiting().len(), 6);
        let (p, k) = (pause.to_string(), kill.to_string());
        let pk = format!("{p} + {k}");
        assert_eq!(
            tried(&mut queue),
            [
                (p.clone(), 2.0),
                (k.clone(), 2.0),
                (pk.clone(), 2.0),
                (p, 1.0),
                (k, 1.0),
                (pk, 1.0)
            ]
        );
        assert!(queue.waiting().is_empty());
    }

    /// Pairs grown mid-instant are tried at that instant after its singles and before the space's
    /// pairs, lower ranks first across everything grown, and again at each later instant.
    #[test]
    fn grown_pairs_join_the_instant_after_its_singles_by_rank() {
        let single = |n: u32| vec![Fault::Kill(Role::Service(n))];
        let pair = |a: u32, b: u32| vec![Fault::Kill(Role::Service(a)), Fault::Pause(Role::Service(b))];
        let mut queue = Queue::new(vec![single(1), single(2)], vec![pair(8, 9)], vec![2.0, 4.0], 2.0);
        let first = queue.next().unwrap();
        assert_eq!(first.faults, single(1));
        // Trial 1 grew a link: its two pairs, ranked 0 and 1.
        queue.grow(vec![(0, pair(1, 10)), (1, pair(1, 11))]);
        assert_eq!(queue.next().unwrap().faults, single(2));
        // Trial 2 grew one too: its rank-0 pair goes before trial 1's rank-1 one.
        queue.grow(vec![(0, pair(2, 10)), (1, pair(2, 11))]);
        let rest: Vec<(Vec<Fault>, f64)> = std::iter::from_fn(|| queue.next())
            .map(|s| (s.faults, s.at_s))
            .collect();
        let expected_instant = |at: f64| {
            vec![
                (pair(1, 10), at),
                (pair(2, 10), at),
                (pair(1, 11), at),
                (pair(2, 11), at),
                (pair(8, 9), at),
            ]
        };
        let mut expected = expected_instant(2.0);
        expected.extend([(single(1), 4.0), (single(2), 4.0)]);
        expected.extend(expected_instant(4.0));
        assert_eq!(rest, expected);
    }

    #[test]
    fn a_pair_grown_after_some_were_tried_waits_its_turn_among_the_rest() {
        let pair = |a: u32, b: u32| vec![Fault::Kill(Role::Service(a)), Fault::Pause(Role::Service(b))];
        let mut queue = Queue::new(vec![vec![Fault::Kill(Role::Redis)]], Vec::new(), vec![2.0], 2.0);
        queue.next();
        queue.grow(vec![(0, pair(1, 10)), (2, pair(1, 12))]);
        assert_eq!(queue.next().unwrap().faults, pair(1, 10));
        // Rank 1 goes before the rank-2 pair still waiting, not before the one already tried; a
        // later rank 0 after the rank 0 already tried, and before the rest.
        queue.grow(vec![(1, pair(2, 11))]);
        assert_eq!(queue.waiting(), [pair(2, 11).as_slice(), pair(1, 12).as_slice()]);
        queue.grow(vec![(0, pair(3, 10))]);
        let order = [pair(3, 10), pair(2, 11), pair(1, 12)];
        assert_eq!(
            queue.waiting(),
            order.iter().map(Vec::as_slice).collect::<Vec<_>>()
        );
        for expected in order {
            assert_eq!(queue.next().unwrap().faults, expected);
        }
        assert!(queue.next().is_none());
    }
}
