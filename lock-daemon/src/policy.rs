//! The decision policy: a pure state machine that turns per-frame observations and the
//! passing of time into unlock / re-lock decisions. Time is passed in, never read.
//!
//! # Rules
//!
//! * A face *qualifies* when its shorter side is at least `min_face_px`. Smaller faces never
//!   count, for or against anybody: distant faces give unreliable embeddings.
//! * The door unlocks when the same enrolled person (accepted by the classifier's open-set
//!   gate) is seen in `frames_required` frames within `window`.
//! * **Several faces in view:** if any qualifying face is unknown, nobody is let in and the
//!   confirmation starts over — a stranger next to (or behind) an employee blocks the unlock
//!   rather than tailgating. Otherwise the largest qualifying face is the candidate; a smaller
//!   enrolled face behind it is ignored.
//! * An unknown face never unlocks and resets the confirmation. A different enrolled person
//!   resets the count to that person. A frame with no qualifying face keeps the hits, which
//!   expire when they fall out of the window.
//! * Unlocked lasts `unlock`, measured from the decision, and is *not* extended by further
//!   frames (while the door is open, frames change nothing); re-locking happens on time even
//!   when no frame arrives ([`Policy::tick`]). Then `cooldown` ignores all observations, so a
//!   person still standing at the door does not immediately re-open it.
//! * Denied-unknown is reported once per encounter: again only after no unknown face was seen
//!   for a whole `window`, so a stranger lingering at the door is one audit event, not 15 a
//!   second.

use std::fmt;
use std::time::{Duration, Instant};

/// The policy's parameters (validated by `config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyConfig {
    /// Frames of the same person needed to unlock (≥ 1).
    pub frames_required: u32,
    /// The frames must fall within this span.
    pub window: Duration,
    /// How long the door stays unlocked.
    pub unlock: Duration,
    /// How long observations are ignored after re-locking.
    pub cooldown: Duration,
    /// Faces with a shorter side below this (pixels) never count.
    pub min_face_px: f32,
}

/// One face in a frame, as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceObservation {
    /// The face box's shorter side, in pixels.
    pub side_px: f32,
    /// The accepted enrolled person, or `None` for unknown.
    pub identity: Option<String>,
    /// Softmax probability of the nearest enrolled person.
    pub probability: f32,
    /// Cosine similarity to the nearest enrolled person's centroid.
    pub similarity: f32,
}

/// All faces of one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub faces: Vec<FaceObservation>,
    /// When the camera delivered the frame (`None`: at the decision). Only measured
    /// (the unlock's latency), never decided on: the window counts decision times.
    pub captured: Option<Instant>,
}

impl Observation {
    /// Builds the observation from the recognition pipeline's output.
    pub fn from_recognized(faces: &[recognition::Recognized]) -> Observation {
        Observation {
            faces: faces
                .iter()
                .map(|r| FaceObservation {
                    side_px: r.face.bbox.side(),
                    identity: r.prediction.identity.clone(),
                    probability: r.prediction.probability,
                    similarity: r.prediction.similarity,
                })
                .collect(),
            captured: None,
        }
    }

    /// The same observation, of a frame the camera delivered at `captured`.
    pub fn captured_at(self, captured: Instant) -> Observation {
        Observation {
            captured: Some(captured),
            ..self
        }
    }
}

/// What the caller must do. Actions are returned in the order they must be carried out.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Energise the lock: `person` was confirmed in `frames` frames. The scores are the
    /// lowest over those frames (the weakest evidence that still passed).
    Unlock {
        person: String,
        frames: u32,
        probability: f32,
        similarity: f32,
        /// When the camera delivered the first of those frames.
        first_seen: Instant,
    },
    /// Lock again: the unlock time of `person` is over.
    Relock { person: String },
    /// A qualifying unknown face was seen (first frame of an encounter).
    DeniedUnknown { probability: f32, similarity: f32 },
}

/// One frame in which the candidate was recognised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub at: Instant,
    /// When the camera delivered the frame.
    pub captured: Instant,
    pub probability: f32,
    pub similarity: f32,
}

/// The policy's state.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Nothing going on.
    Locked,
    /// `person` was recognised in the frames of `hits` (all within the window).
    Confirming { person: String, hits: Vec<Hit> },
    /// The door is open for `person` until `until`.
    Unlocked { person: String, until: Instant },
    /// Just re-locked; observations are ignored until `until`.
    Cooldown { until: Instant },
}

impl State {
    /// The state's name, for logs and STATUS.
    pub fn name(&self) -> &'static str {
        match self {
            State::Locked => "locked",
            State::Confirming { .. } => "confirming",
            State::Unlocked { .. } => "unlocked",
            State::Cooldown { .. } => "cooldown",
        }
    }
}

/// What `systemctl status` and the log say about a decision.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Unlock {
                person,
                frames,
                probability,
                similarity,
                ..
            } => write!(
                f,
                "unlocked for {person} ({frames} frames, p >= {probability:.2}, sim >= {similarity:.2})"
            ),
            Action::Relock { person } => write!(f, "locked again after {person}"),
            Action::DeniedUnknown {
                probability,
                similarity,
            } => write!(
                f,
                "refused an unknown face (p {probability:.2}, sim {similarity:.2})"
            ),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Locked | State::Cooldown { .. } => f.write_str(self.name()),
            State::Confirming { person, hits } => {
                write!(f, "confirming {person} ({} frames)", hits.len())
            }
            State::Unlocked { person, .. } => write!(f, "unlocked for {person}"),
        }
    }
}

/// What one frame says, after applying the size floor and the several-faces rule.
#[derive(Debug, Clone, PartialEq)]
enum Verdict {
    /// No qualifying face.
    Nobody,
    /// At least one qualifying face is unknown (scores of the largest unknown face).
    Stranger { probability: f32, similarity: f32 },
    /// The largest qualifying face is this enrolled person, and no qualifying face is unknown.
    Person { name: String, hit: Hit },
}

fn verdict(config: &PolicyConfig, now: Instant, obs: &Observation) -> Verdict {
    let qualifying = || obs.faces.iter().filter(|f| f.side_px >= config.min_face_px);
    if let Some(stranger) = largest(qualifying().filter(|f| f.identity.is_none())) {
        return Verdict::Stranger {
            probability: stranger.probability,
            similarity: stranger.similarity,
        };
    }
    match largest(qualifying()) {
        Some(FaceObservation {
            identity: Some(name),
            probability,
            similarity,
            ..
        }) => Verdict::Person {
            name: name.clone(),
            hit: Hit {
                at: now,
                captured: obs.captured.unwrap_or(now),
                probability: *probability,
                similarity: *similarity,
            },
        },
        _ => Verdict::Nobody,
    }
}

fn largest<'a>(faces: impl Iterator<Item = &'a FaceObservation>) -> Option<&'a FaceObservation> {
    faces.max_by(|a, b| a.side_px.total_cmp(&b.side_px))
}

/// The decision state machine.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    state: State,
    /// When a qualifying unknown face was last seen (for one denied event per encounter).
    last_stranger: Option<Instant>,
}

impl Policy {
    /// A policy in the locked state.
    pub fn new(config: PolicyConfig) -> Policy {
        assert!(
            config.frames_required >= 1,
            "frames_required must be at least 1"
        );
        Policy {
            config,
            state: State::Locked,
            last_stranger: None,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Whether the policy currently wants the door unlocked.
    pub fn is_unlocked(&self) -> bool {
        matches!(self.state, State::Unlocked { .. })
    }

    /// Feeds one frame's observation. Time-based transitions due at `now` are applied first,
    /// so their actions come first in the result.
    pub fn step(&mut self, now: Instant, obs: &Observation) -> Vec<Action> {
        let mut actions = self.tick(now);
        if matches!(self.state, State::Unlocked { .. } | State::Cooldown { .. }) {
            // Open or cooling down: frames change nothing.
            return actions;
        }
        let verdict = verdict(&self.config, now, obs);
        if let Verdict::Stranger {
            probability,
            similarity,
        } = verdict
        {
            let window = self.config.window;
            let new_encounter = self
                .last_stranger
                .is_none_or(|seen| now.saturating_duration_since(seen) > window);
            self.last_stranger = Some(now);
            if new_encounter {
                actions.push(Action::DeniedUnknown {
                    probability,
                    similarity,
                });
            }
        }
        // `tick` has already dropped hits that fell out of the window.
        let (person, hits, reason) = match (&self.state, verdict) {
            (_, Verdict::Nobody) => return actions,
            (State::Confirming { .. }, Verdict::Stranger { .. }) => {
                self.transition(State::Locked, "unknown face in view");
                return actions;
            }
            (_, Verdict::Stranger { .. }) => return actions,
            (State::Confirming { person, hits }, Verdict::Person { name, hit })
                if *person == name =>
            {
                let mut hits = hits.clone();
                hits.push(hit);
                (name, hits, "seen again")
            }
            (State::Confirming { .. }, Verdict::Person { name, hit }) => {
                (name, vec![hit], "different person")
            }
            (_, Verdict::Person { name, hit }) => (name, vec![hit], "enrolled face"),
        };
        if hits.len() >= self.config.frames_required as usize {
            actions.push(Action::Unlock {
                person: person.clone(),
                frames: hits.len() as u32,
                probability: hits
                    .iter()
                    .map(|h| h.probability)
                    .fold(f32::INFINITY, f32::min),
                similarity: hits
                    .iter()
                    .map(|h| h.similarity)
                    .fold(f32::INFINITY, f32::min),
                first_seen: hits.iter().map(|h| h.captured).min().unwrap_or(now),
            });
            let until = now + self.config.unlock;
            self.transition(State::Unlocked { person, until }, "confirmed");
        } else {
            self.transition(State::Confirming { person, hits }, reason);
        }
        actions
    }

    /// When [`tick`](Policy::tick) next has something to do: the re-lock, the end of the
    /// cooldown, or the first hit falling out of the window. `None` while locked and idle.
    /// The service sleeps until then at most, so re-locking never waits for a frame.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Locked => None,
            State::Unlocked { until, .. } | State::Cooldown { until } => Some(*until),
            // Hits expire once strictly older than the window.
            State::Confirming { hits, .. } => hits
                .iter()
                .map(|h| h.at + self.config.window + Duration::from_millis(1))
                .min(),
        }
    }

    /// A frame could not be recognised (an error in a stage of the frame pipeline): the
    /// confirmation so far is discarded, so the frames that unlock are consecutive
    /// recognised frames with no failure between them. A decision already made stands
    /// (the door re-locks on time), and a failure never unlocks.
    pub fn failed(&mut self, now: Instant) -> Vec<Action> {
        let actions = self.tick(now);
        if matches!(self.state, State::Confirming { .. }) {
            self.transition(State::Locked, "a frame could not be recognised");
        }
        actions
    }

    /// Applies the time-based transitions due at `now`: expired hits, re-lock, end of
    /// cooldown. Call it every loop iteration, frame or no frame.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let window = self.config.window;
        match &mut self.state {
            State::Confirming { hits, .. } => {
                hits.retain(|h| now.saturating_duration_since(h.at) <= window);
                if hits.is_empty() {
                    self.transition(State::Locked, "confirmation expired");
                }
            }
            State::Unlocked { person, until } if now >= *until => {
                actions.push(Action::Relock {
                    person: person.clone(),
                });
                let until = now + self.config.cooldown;
                self.transition(State::Cooldown { until }, "unlock time over");
            }
            State::Cooldown { until } if now >= *until => {
                self.transition(State::Locked, "cooldown over");
            }
            State::Locked | State::Unlocked { .. } | State::Cooldown { .. } => {}
        }
        actions
    }

    /// Enters `next`, logging the transition at info level when the state's kind or the
    /// person changes (debug otherwise).
    fn transition(&mut self, next: State, reason: &str) {
        let person = |s: &State| match s {
            State::Confirming { person, .. } | State::Unlocked { person, .. } => {
                Some(person.clone())
            }
            State::Locked | State::Cooldown { .. } => None,
        };
        if next.name() != self.state.name() || person(&next) != person(&self.state) {
            log::info!("policy: {} -> {next} ({reason})", self.state);
        } else {
            log::debug!("policy: {next} ({reason})");
        }
        self.state = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_deadline_is_the_relock_then_the_end_of_the_cooldown() {
        let t0 = Instant::now();
        let mut policy = Policy::new(CONFIG);
        assert_eq!(policy.next_deadline(), None);
        let ada = observation(&[ADA]);
        policy.step(t0, &ada);
        assert_eq!(
            policy.next_deadline(),
            Some(t0 + CONFIG.window + Duration::from_millis(1)),
            "the first hit expires"
        );
        policy.step(t0 + Duration::from_millis(100), &ada);
        policy.step(t0 + Duration::from_millis(200), &ada);
        let unlocked_at = t0 + Duration::from_millis(200);
        assert_eq!(policy.next_deadline(), Some(unlocked_at + CONFIG.unlock));
        let relock = unlocked_at + CONFIG.unlock;
        assert!(policy.tick(relock - Duration::from_millis(1)).is_empty());
        assert_eq!(
            policy.tick(relock).len(),
            1,
            "relocks exactly at the deadline"
        );
        assert_eq!(policy.next_deadline(), Some(relock + CONFIG.cooldown));
        policy.tick(relock + CONFIG.cooldown);
        assert_eq!(policy.next_deadline(), None);
    }

    const CONFIG: PolicyConfig = PolicyConfig {
        frames_required: 3,
        window: Duration::from_secs(2),
        unlock: Duration::from_secs(5),
        cooldown: Duration::from_secs(3),
        min_face_px: 80.0,
    };

    /// A face: side in pixels and identity (`None` = unknown).
    #[derive(Clone, Copy)]
    struct F(f32, Option<&'static str>);

    const ADA: F = F(150.0, Some("ada"));
    const BOB: F = F(150.0, Some("bob"));
    const STRANGER: F = F(150.0, None);

    /// One scripted event at a time in milliseconds.
    enum Ev {
        Frame(&'static [F]),
        Tick,
        /// A frame that could not be recognised.
        Fail,
    }
    use Ev::{Fail, Frame, Tick};

    /// Runs a script; returns the actions as `"<ms> <action>"` lines.
    fn run_with(config: PolicyConfig, script: &[(u64, Ev)]) -> (Vec<String>, Policy) {
        let t0 = Instant::now();
        let mut policy = Policy::new(config);
        let mut out = Vec::new();
        for (ms, ev) in script {
            let now = t0 + Duration::from_millis(*ms);
            let actions = match ev {
                Frame(faces) => policy.step(now, &observation(faces)),
                Tick => policy.tick(now),
                Fail => policy.failed(now),
            };
            out.extend(actions.iter().map(|a| format!("{ms} {}", describe(a))));
        }
        (out, policy)
    }

    fn run(script: &[(u64, Ev)]) -> Vec<String> {
        run_with(CONFIG, script).0
    }

    fn observation(faces: &[F]) -> Observation {
        Observation {
            faces: faces
                .iter()
                .map(|F(side, id)| FaceObservation {
                    side_px: *side,
                    identity: id.map(str::to_owned),
                    probability: 0.9,
                    similarity: 0.7,
                })
                .collect(),
            captured: None,
        }
    }

    fn describe(action: &Action) -> String {
        match action {
            Action::Unlock { person, frames, .. } => format!("unlock {person} {frames}"),
            Action::Relock { person } => format!("relock {person}"),
            Action::DeniedUnknown { .. } => "denied".into(),
        }
    }

    /// The same frame at each of the given times.
    fn frames(times: &[u64], faces: &'static [F]) -> Vec<(u64, Ev)> {
        times.iter().map(|&t| (t, Frame(faces))).collect()
    }

    #[test]
    fn three_frames_of_the_same_person_unlock() {
        let (actions, policy) = run_with(CONFIG, &frames(&[0, 200, 400], &[ADA]));
        assert_eq!(actions, ["400 unlock ada 3"]);
        assert!(policy.is_unlocked());
    }

    #[test]
    fn fewer_frames_than_required_do_not_unlock() {
        let (actions, policy) = run_with(CONFIG, &frames(&[0, 200], &[ADA]));
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(policy.state().name(), "confirming");
    }

    #[test]
    fn unknown_face_never_unlocks() {
        let times: Vec<u64> = (0..100).map(|i| i * 100).collect();
        let actions = run(&frames(&times, &[STRANGER]));
        assert!(actions.iter().all(|a| a.ends_with("denied")), "{actions:?}");
        assert_eq!(actions.first().map(String::as_str), Some("0 denied"));
    }

    #[test]
    fn unknown_face_resets_the_confirmation() {
        let mut script = frames(&[0, 200], &[ADA]);
        script.push((400, Frame(&[STRANGER])));
        script.extend(frames(&[600, 800], &[ADA]));
        assert_eq!(run(&script), ["400 denied"]);
        script.push((1000, Frame(&[ADA])));
        assert_eq!(run(&script), ["400 denied", "1000 unlock ada 3"]);
    }

    #[test]
    fn relocks_on_time_without_frames() {
        let mut script = frames(&[0, 200, 400], &[ADA]);
        script.extend([(5399, Tick), (5400, Tick)]);
        let (actions, policy) = run_with(CONFIG, &script);
        assert_eq!(actions, ["400 unlock ada 3", "5400 relock ada"]);
        assert_eq!(policy.state().name(), "cooldown");
        script.extend([(8399, Tick), (8400, Tick)]);
        let (_, policy) = run_with(CONFIG, &script);
        assert_eq!(policy.state(), &State::Locked);
    }

    #[test]
    fn more_frames_do_not_extend_the_unlock() {
        let times: Vec<u64> = (0..=30).map(|i| i * 200).collect();
        let actions = run(&frames(&times, &[ADA]));
        assert_eq!(actions, ["400 unlock ada 3", "5400 relock ada"]);
    }

    #[test]
    fn faces_below_min_size_never_count() {
        const TINY_ADA: F = F(79.0, Some("ada"));
        const TINY_STRANGER: F = F(40.0, None);
        let times = [0, 200, 400, 600, 800];
        assert!(run(&frames(&times, &[TINY_ADA])).is_empty());
        // A distant stranger neither blocks nor is reported.
        assert_eq!(
            run(&frames(&times, &[ADA, TINY_STRANGER])),
            ["400 unlock ada 3"]
        );
        // A tiny enrolled face does not count even when it is the only enrolled one.
        assert!(run(&frames(&times, &[TINY_ADA, TINY_STRANGER])).is_empty());
    }

    #[test]
    fn stranger_in_view_blocks_unlock() {
        const SMALL_STRANGER: F = F(90.0, None);
        let times: Vec<u64> = (0..10).map(|i| i * 200).collect();
        assert_eq!(run(&frames(&times, &[ADA, SMALL_STRANGER])), ["0 denied"]);
        assert_eq!(run(&frames(&times, &[SMALL_STRANGER, ADA])), ["0 denied"]);
    }

    #[test]
    fn largest_enrolled_face_is_the_candidate() {
        const SMALL_BOB: F = F(100.0, Some("bob"));
        let actions = run(&frames(&[0, 200, 400], &[SMALL_BOB, ADA]));
        assert_eq!(actions, ["400 unlock ada 3"]);
    }

    #[test]
    fn different_person_resets_the_count() {
        let mut script = frames(&[0, 200], &[ADA]);
        script.extend(frames(&[400, 600], &[BOB]));
        script.push((800, Frame(&[ADA])));
        assert!(run(&script).is_empty());
        script.extend(frames(&[1000, 1200], &[BOB]));
        // bob at 400, 600 were forgotten when ada came back at 800.
        assert!(run(&script).is_empty());
        script.push((1400, Frame(&[BOB])));
        assert_eq!(run(&script).last().unwrap(), "1400 unlock bob 3");
    }

    #[test]
    fn hits_outside_window_do_not_count() {
        let cases: [(&[u64], Option<&str>); 4] = [
            (&[0, 1500, 2500], None),
            (&[0, 1500, 2500, 2600], Some("2600 unlock ada 3")),
            (&[0, 1000, 2000], Some("2000 unlock ada 3")),
            (&[0, 2001, 4002], None),
        ];
        for (times, expected) in cases {
            let actions = run(&frames(times, &[ADA]));
            assert_eq!(actions.first().map(String::as_str), expected, "{times:?}");
        }
    }

    #[test]
    fn frames_without_faces_keep_the_hits() {
        let mut script = frames(&[0, 200, 400], &[ADA]);
        script.insert(1, (100, Frame(&[])));
        script.insert(3, (300, Frame(&[])));
        assert_eq!(run(&script), ["400 unlock ada 3"]);
    }

    #[test]
    fn confirmation_expires_when_time_passes() {
        let mut script = frames(&[0, 200], &[ADA]);
        script.push((2300, Tick));
        let (actions, policy) = run_with(CONFIG, &script);
        assert!(actions.is_empty());
        assert_eq!(policy.state(), &State::Locked);
    }

    #[test]
    fn cooldown_ignores_faces() {
        let times: Vec<u64> = (0..=70).map(|i| i * 200).collect();
        let mut script = frames(&[0, 200, 400], &[ADA]);
        script.push((5400, Tick));
        // ada and a stranger during cooldown (5400..8400): nothing happens.
        script.extend(frames(&[5600, 5800, 6000, 8200], &[ADA]));
        script.push((8300, Frame(&[STRANGER])));
        // After the cooldown ada needs three fresh frames again.
        script.extend(frames(&[8400, 8600, 8800], &[ADA]));
        assert_eq!(
            run(&script),
            ["400 unlock ada 3", "5400 relock ada", "8800 unlock ada 3"]
        );
        // Continuous frames: unlock, relock, cooldown, unlock again — never two unlocks back to back.
        let actions = run(&frames(&times, &[ADA]));
        assert_eq!(
            actions,
            [
                "400 unlock ada 3",
                "5400 relock ada",
                "8800 unlock ada 3",
                "13800 relock ada"
            ]
        );
    }

    #[test]
    fn stranger_is_reported_once_per_encounter() {
        let mut script = frames(&[0, 500, 1000, 2900], &[STRANGER]);
        script.extend(frames(&[5000, 5100], &[STRANGER]));
        assert_eq!(run(&script), ["0 denied", "5000 denied"]);
    }

    #[test]
    fn unlock_reports_the_weakest_frame_scores() {
        let t0 = Instant::now();
        let mut policy = Policy::new(CONFIG);
        let mut actions = Vec::new();
        for (i, (p, s)) in [(0.95, 0.8), (0.7, 0.9), (0.9, 0.6)]
            .into_iter()
            .enumerate()
        {
            let obs = Observation {
                faces: vec![FaceObservation {
                    side_px: 100.0,
                    identity: Some("ada".into()),
                    probability: p,
                    similarity: s,
                }],
                captured: None,
            };
            actions = policy.step(t0 + Duration::from_millis(i as u64 * 100), &obs);
        }
        assert_eq!(
            actions,
            [Action::Unlock {
                person: "ada".into(),
                frames: 3,
                probability: 0.7,
                similarity: 0.6,
                first_seen: t0,
            }]
        );
    }

    #[test]
    fn the_unlock_carries_when_the_camera_delivered_its_first_frame() {
        let t0 = Instant::now();
        let mut policy = Policy::new(CONFIG);
        let mut actions = Vec::new();
        for i in 0..3u64 {
            // Each frame reaches the policy 250 ms after the camera delivered it.
            let captured = t0 + Duration::from_millis(i * 100);
            let obs = observation(&[ADA]).captured_at(captured);
            actions = policy.step(captured + Duration::from_millis(250), &obs);
        }
        match actions.as_slice() {
            [Action::Unlock { first_seen, .. }] => assert_eq!(*first_seen, t0),
            other => panic!("expected an unlock, got {other:?}"),
        }
    }

    #[test]
    fn a_frame_that_fails_recognition_discards_the_confirmation() {
        let actions = run(&[
            (0, Frame(&[ADA])),
            (100, Frame(&[ADA])),
            (200, Fail),
            (300, Frame(&[ADA])),
            (400, Frame(&[ADA])),
        ]);
        assert!(actions.is_empty(), "{actions:?}");
        let actions = run(&[
            (0, Frame(&[ADA])),
            (100, Fail),
            (200, Frame(&[ADA])),
            (300, Frame(&[ADA])),
            (400, Frame(&[ADA])),
        ]);
        assert_eq!(
            actions,
            ["400 unlock ada 3"],
            "three frames after the failure"
        );
    }

    #[test]
    fn a_failure_never_unlocks_and_leaves_a_granted_unlock_to_its_timer() {
        let mut script = frames(&[0, 100, 200], &[ADA]);
        script.push((300, Fail));
        script.push((5199, Fail));
        script.push((5200, Tick));
        let actions = run(&script);
        assert_eq!(actions, ["200 unlock ada 3", "5200 relock ada"]);
    }

    #[test]
    fn single_frame_policy_unlocks_on_the_first_frame() {
        let config = PolicyConfig {
            frames_required: 1,
            ..CONFIG
        };
        let (actions, _) = run_with(config, &frames(&[0], &[ADA]));
        assert_eq!(actions, ["0 unlock ada 1"]);
    }

    #[test]
    fn observation_is_built_from_recognized_faces() {
        let face = recognition::Face {
            bbox: recognition::BBox {
                x1: 10.0,
                y1: 20.0,
                x2: 110.0,
                y2: 140.0,
            },
            score: 0.99,
            landmarks: [(0.0, 0.0); 5],
        };
        let recognized = recognition::Recognized {
            face,
            prediction: recognition::Prediction {
                identity: None,
                nearest: "ada".into(),
                probability: 0.4,
                similarity: 0.3,
            },
        };
        let obs = Observation::from_recognized(&[recognized]);
        assert_eq!(
            obs.faces,
            [FaceObservation {
                side_px: 100.0,
                identity: None,
                probability: 0.4,
                similarity: 0.3
            }]
        );
    }
}
