//! `soak`: a realistic player for long runs.
//!
//! It plays for a few seconds (random between 1 and 5, or `--play-time`, one duration or a range
//! drawn from per instance, cut short when a run with `--duration` ends) at a human pace of
//! `--soak-input-rate` inputs per second (default 5), answering pings, pinging the server and
//! acknowledging events, then leaves: nine times in ten with `Bye` (the server must record
//! `client_quit` and acknowledge every input), once in ten by closing without `Bye` (the server must record `peer_eof`).

use std::time::Duration;

use rand::Rng;

use super::{
    During, GRACE, Instance, Verdict, await_relays, close_without_bye, errors_of, quit_and_check,
};
use crate::player::Pace;
use crate::reconcile::{Expect, Reason};

pub(crate) async fn run(inst: &Instance) -> Verdict {
    let (play_for, graceful) = {
        let mut rng = rand::rng();
        let opts = inst.opts();
        let play_for = match (opts.play_time, opts.play_time_max) {
            (Some(min), Some(max)) if max > min => rng.random_range(min..=max),
            (Some(min), _) => min,
            (None, _) => Duration::from_millis(rng.random_range(1000..=5000)),
        };
        // A run with a duration ends its long players when its time is up (at least a second
        // of play each, so that every instance still plays and quits as it would).
        let play_for = match inst.ctx.ends {
            Some(ends) => play_for.min(
                ends.saturating_duration_since(tokio::time::Instant::now())
                    .max(Duration::from_secs(1)),
            ),
            None => play_for,
        };
        (play_for, rng.random_bool(0.9))
    };
    let mut p = match inst.open(inst.shared_room()).await {
        Ok(p) => p,
        Err(verdict) => return verdict,
    };
    let expect = Expect::Exact(if graceful {
        Reason::ClientQuit
    } else {
        Reason::PeerEof
    });
    let result = async {
        let rate = inst.opts().soak_input_rate;
        let (inputs, every) = if rate > 0.0 && rate.is_finite() {
            let inputs = (play_for.as_secs_f64() * rate).floor() as u32;
            (inputs, Duration::from_secs_f64(1.0 / rate))
        } else {
            (0, play_for)
        };
        let pace = Pace {
            inputs,
            every,
            bytes: inst.opts().input_bytes,
        };

        p.play(
            Some(pace),
            play_for,
            play_for + p.idle + GRACE,
            "playing",
            |_| true,
        )
        .await
        .during("playing")?;
        await_relays(&mut p).await?;
        if graceful {
            quit_and_check(&mut p).await
        } else {
            close_without_bye(&mut p).await
        }
    }
    .await;
    inst.verdict(expect, &errors_of(&p), result)
}
