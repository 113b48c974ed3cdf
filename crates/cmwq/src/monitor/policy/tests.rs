//! Unit tests of `policy` (in a file of their own, beside the code).

use super::*;

const US: u64 = 1_000;
const MS: u64 = 1_000_000;

#[test]
fn sentinel_acts_at_once_with_a_zero_window() {
    assert_eq!(sentinel_blocked(None, 5 * MS, 0), Ok(()));
}

#[test]
fn sentinel_waits_out_the_window_from_the_first_blocked_pick() {
    assert_eq!(
        sentinel_blocked(None, 5 * MS, 50 * US),
        Err(5 * MS + 50 * US)
    );
    assert_eq!(
        sentinel_blocked(Some(5 * MS), 5 * MS + 20 * US, 50 * US),
        Err(5 * MS + 50 * US)
    );
    assert_eq!(
        sentinel_blocked(Some(5 * MS), 5 * MS + 50 * US, 50 * US),
        Ok(())
    );
}

#[test]
fn sentinel_backs_off_while_runners_are_runnable_and_resets_after_acting() {
    let mut b = SENTINEL_BACKOFF_MIN_NS;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let (w, nb) = sentinel_wait(Pick::Runnable, b, 0);
        waits.push(w);
        b = nb;
    }
    assert_eq!(waits[0], SENTINEL_BACKOFF_MIN_NS);
    assert!(waits.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(*waits.last().unwrap(), SENTINEL_BACKOFF_MAX_NS);
    let (w, nb) = sentinel_wait(Pick::Acted, b, 0);
    assert_eq!((w, nb), (0, SENTINEL_BACKOFF_MIN_NS));
}

#[test]
fn sentinel_sleeps_until_the_window_ends() {
    assert_eq!(sentinel_wait(Pick::Window(10 * MS), 77, 9 * MS), (MS, 77));
    assert_eq!(sentinel_wait(Pick::Window(10 * MS), 77, 11 * MS).0, 0);
    assert_eq!(
        sentinel_wait(Pick::NothingPending, 77, 0),
        (0, SENTINEL_BACKOFF_MIN_NS)
    );
}

fn blocked(run: u64) -> ProcSample {
    ProcSample {
        blocked: true,
        run_ns: Some(run),
    }
}

fn running(run: u64) -> ProcSample {
    ProcSample {
        blocked: false,
        run_ns: Some(run),
    }
}

#[test]
fn proc_blocked_needs_a_whole_window_without_run_time() {
    let stall = 200 * US;
    let mut t = ProcTrack::new(0, stall);
    assert_eq!(t.next_sample, 100 * US);
    let v = proc_sample(&mut t, blocked(7), 100 * US, stall, false, MS);
    assert_eq!(v, ProcVerdict::Undecided);
    let v = proc_sample(&mut t, blocked(7), 200 * US, stall, false, MS);
    assert_eq!(v, ProcVerdict::Undecided);
    let v = proc_sample(&mut t, blocked(7), 300 * US, stall, false, MS);
    assert_eq!(v, ProcVerdict::Blocked);
}

#[test]
fn proc_run_time_gained_between_blocked_samples_restarts_the_window() {
    // It woke, ran and blocked again between two samples.
    let stall = 200 * US;
    let mut t = ProcTrack::new(0, stall);
    proc_sample(&mut t, blocked(7), 100 * US, stall, false, MS);
    let v = proc_sample(&mut t, blocked(9), 300 * US, stall, false, MS);
    assert_eq!(v, ProcVerdict::Undecided);
    assert_eq!(t.blocked_since, Some((300 * US, Some(9))));
}

#[test]
fn proc_preempted_is_never_blocked_and_backs_off() {
    let stall = 200 * US;
    let mut t = ProcTrack::new(0, stall);
    let mut now = t.next_sample;
    for i in 0..20 {
        let v = proc_sample(&mut t, running(i), now, stall, false, MS);
        assert_eq!(v, ProcVerdict::Running { woke: false });
        now = t.next_sample;
    }
    assert_eq!(t.interval, MS);
}

#[test]
fn proc_zero_window_still_samples_at_a_floor() {
    let mut t = ProcTrack::new(0, 0);
    assert_eq!(t.interval, PROC_MIN_INTERVAL_NS);
    assert_eq!(
        proc_sample(&mut t, blocked(1), 20 * US, 0, false, MS),
        ProcVerdict::Undecided
    );
    assert_eq!(
        proc_sample(&mut t, blocked(1), 40 * US, 0, false, MS),
        ProcVerdict::Blocked
    );
}

#[test]
fn proc_return_of_a_marked_runner_rebases_its_cpu() {
    let mut t = ProcTrack::new(0, 200 * US);
    let v = proc_sample(&mut t, running(1), 100 * US, 200 * US, true, MS);
    assert_eq!(v, ProcVerdict::Running { woke: true });
}

#[test]
fn a_marked_runner_is_looked_at_for_its_return_every_return_look() {
    const G: u64 = RETURN_LOOK_NS;
    let mut t = ProcTrack::new(0, 0);
    // Marked at two different times: both looked at on the same grid
    // point, at least half a look after the mark.
    on_blocked(&mut t, 5 * G + G / 10);
    assert_eq!(t.next_sample, 6 * G);
    let mut u = ProcTrack::new(0, 0);
    on_blocked(&mut u, 5 * G + G / 3);
    assert_eq!(u.next_sample, 6 * G);
    on_blocked(&mut u, 5 * G + 6 * G / 10);
    assert_eq!(u.next_sample, 7 * G);
    // Still blocked (sampled a little late): the next grid point, never
    // the fast cadence of an unmarked runner being confirmed.
    let v = proc_sample(&mut t, blocked(1), 6 * G + 30 * US, 0, true, MS);
    assert_ne!(v, ProcVerdict::Running { woke: true });
    assert_eq!(t.next_sample, 7 * G);
    // Back: counted again, its CPU rebased.
    let now = t.next_sample;
    let v = proc_sample(&mut t, running(2), now, 0, true, MS);
    assert_eq!(v, ProcVerdict::Running { woke: true });
}

#[test]
fn a_new_runner_wakes_the_monitor_only_if_it_would_look_too_late() {
    let th = Some(10 * MS);
    // In a pass (it may have read the pool before the runner started),
    // or its deadline already passed.
    assert!(wake_to_follow(0, 100 * MS, th));
    assert!(wake_to_follow(99 * MS, 100 * MS, th));
    // Asleep with no timeout, or past an eighth of the threshold (at
    // most RETURN_LOOK_NS).
    assert!(wake_to_follow(u64::MAX, 100 * MS, th));
    assert!(wake_to_follow(100 * MS + RETURN_LOOK_NS + 1, 100 * MS, th));
    assert!(wake_to_follow(100 * MS + MS / 2, 100 * MS, Some(MS)));
    // It looks soon enough anyway.
    assert!(!wake_to_follow(100 * MS + RETURN_LOOK_NS, 100 * MS, th));
    assert!(!wake_to_follow(100 * MS + 1, 100 * MS, th));
    // Hog detection off: still within a return look.
    assert!(wake_to_follow(u64::MAX, 100 * MS, None));
    assert!(!wake_to_follow(
        100 * MS + RETURN_LOOK_NS / 2,
        100 * MS,
        None
    ));
}

#[test]
fn backstop_backs_off_only_while_the_runner_has_its_cpu_alone() {
    // Alone: doubles up to the maximum.
    let mut i = BACKSTOP_FAST_NS;
    for _ in 0..10 {
        i = backstop_interval(i, i, i);
    }
    assert_eq!(i, BACKSTOP_MAX_INTERVAL_NS);
    // Sharing its CPU (half the time on it): fast again.
    assert_eq!(backstop_interval(i, i / 2, i), BACKSTOP_FAST_NS);
    assert_eq!(backstop_interval(i, 0, 0), BACKSTOP_FAST_NS);
}

#[test]
fn perf_the_last_record_decides() {
    use Switch::*;
    assert_eq!(perf_fold(None, [Blocked(5), Runnable]), None);
    assert_eq!(perf_fold(None, [Runnable, Blocked(7)]), Some(7));
    assert_eq!(perf_fold(Some(3), []), Some(3));
    assert_eq!(perf_fold(Some(3), [Blocked(9)]), Some(9));
}

#[test]
fn perf_blocked_after_the_window_only() {
    assert_eq!(perf_verdict(None, 100, 50), Ok(false));
    assert_eq!(perf_verdict(Some(100), 120, 50), Err(150));
    assert_eq!(perf_verdict(Some(100), 150, 50), Ok(true));
    assert_eq!(perf_verdict(Some(100), 100, 0), Ok(true));
}

#[test]
fn hog_checks_wait_for_the_rest_of_the_threshold() {
    assert_eq!(hog_check(10 * MS, 10 * MS, 0), HogCheck::Hog);
    assert_eq!(
        hog_check(4 * MS, 10 * MS, 100),
        HogCheck::CheckAt(100 + 6 * MS)
    );
    // Never more often than an eighth of the threshold.
    assert_eq!(
        hog_check(10 * MS - 1, 10 * MS, 0),
        HogCheck::CheckAt(10 * MS / 8)
    );
}

#[test]
fn progress_stalls_after_a_window_without_completions() {
    assert!(!progress_stalled(0, MS - 1, MS));
    assert!(progress_stalled(0, MS, MS));
}

#[test]
fn progress_window_has_a_floor() {
    assert_eq!(progress_window(0), MS);
    assert_eq!(progress_window(400 * US), 2 * MS);
}

fn mask(cpus: &[usize]) -> CpuMask {
    CpuMask::from_cpus(cpus.iter().copied())
}

#[test]
fn g34_the_monitor_follows_the_limited_runners_and_comes_back() {
    let all = mask(&[0, 1, 2, 3]);
    // No limit, or no runner holding it: nothing to do.
    assert_eq!(
        follow_runners(false, &mask(&[1]), Some(&all), None),
        Follow::Keep
    );
    assert_eq!(
        follow_runners(true, &mask(&[]), Some(&all), None),
        Follow::Keep
    );
    // Runners on every CPU: nowhere idle to leave.
    assert_eq!(follow_runners(true, &all, Some(&all), None), Follow::Keep);
    // A runner on CPU 1 holds the limit: the monitor moves there.
    let f = Followed {
        saved: all.clone(),
        applied: mask(&[1]),
    };
    assert_eq!(
        follow_runners(true, &mask(&[1]), Some(&all), None),
        Follow::Narrow(f.clone())
    );
    // Still there: no system call.
    assert_eq!(
        follow_runners(true, &mask(&[1]), Some(&mask(&[1])), Some(&f)),
        Follow::Keep
    );
    // The runner moved: follow it, keeping what to come back to.
    assert_eq!(
        follow_runners(true, &mask(&[2, 3]), Some(&mask(&[1])), Some(&f)),
        Follow::Narrow(Followed {
            saved: all.clone(),
            applied: mask(&[2, 3])
        })
    );
    // Runners outside the saved mask are not followed there.
    assert_eq!(
        follow_runners(true, &mask(&[5]), Some(&mask(&[1])), Some(&f)),
        Follow::Restore(all.clone())
    );
    // The limit lifted, or the runners gone: back to the saved mask.
    assert_eq!(
        follow_runners(false, &mask(&[1]), Some(&mask(&[1])), Some(&f)),
        Follow::Restore(all.clone())
    );
    assert_eq!(
        follow_runners(true, &mask(&[]), Some(&mask(&[1])), Some(&f)),
        Follow::Restore(all.clone())
    );
    // Someone set the mask from outside meanwhile: theirs stands.
    assert_eq!(
        follow_runners(true, &mask(&[1]), Some(&mask(&[0])), Some(&f)),
        Follow::Forget
    );
    // An unreadable mask changes nothing.
    assert_eq!(
        follow_runners(true, &mask(&[1]), None, Some(&f)),
        Follow::Keep
    );
}
