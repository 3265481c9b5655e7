//! Thread priorities. A command's own thread consumes the records in bundle order (in
//! `load` it is the store's single writer) and the rest of the work waits on it. The
//! helper threads that read, parse, map and hash run one step lower (nice +5), so that on
//! a machine with few cores they take the cores it leaves idle rather than time slices
//! it needs. With nothing to compete with, they run at full speed as before.

use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};

/// The cross-platform priority of helper threads: 35 of 0..=99, which on Linux is nice +5.
const HELPER: u8 = 35;

/// Lowers the calling thread to the helpers' priority. Best effort: a system that
/// refuses leaves it as it was.
pub fn helper_thread() {
    if let Ok(value) = ThreadPriorityValue::try_from(HELPER) {
        let _ = set_current_thread_priority(ThreadPriority::Crossplatform(value));
    }
}

/// Builds rayon's global pool with helper threads. Call before anything uses rayon.
pub fn helper_pool() {
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| helper_thread())
        .build_global();
}

#[cfg(test)]
mod tests {
    /// The nice value of the calling thread, from `/proc/thread-self/stat`.
    #[cfg(target_os = "linux")]
    fn nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name in parentheses; nice is field 19 overall.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn helper_threads_run_at_nice_5_and_the_caller_is_untouched() {
        let before = nice();
        let helper = std::thread::spawn(|| {
            super::helper_thread();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(helper, 5);
        assert_eq!(nice(), before);
    }
}
