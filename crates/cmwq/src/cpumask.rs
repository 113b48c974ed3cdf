//! CPU masks: a set of CPU ids of any size, in the kernel's cpulist and
//! hex formats (the userspace counterpart of `include/linux/cpumask.h`).
//! A leaf: [`topology`](crate::topology) builds pods out of these.

use std::fmt;

use rustix::thread::CpuSet;

/// Bits per word of a [`CpuMask`].
const WORD_BITS: usize = u64::BITS as usize;

/// The largest CPU id [`CpuMask::parse_list`] accepts.
///
/// The kernel's own limit (`CONFIG_NR_CPUS`) is at most 8192 today; the cap
/// is far above that and only keeps a corrupt file such as `"0-4294967295"`
/// from making us allocate gigabytes.
const MAX_PARSED_CPU: usize = (1 << 20) - 1;

/// A set of CPU ids (0-based), any size.
///
/// The bitmap is kept normalized: it never ends in a zero word, so two masks
/// with the same CPUs compare and hash equal however they were built, and an
/// empty mask holds no words at all.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub(crate) struct CpuMask {
    /// Bit `cpu % 64` of word `cpu / 64` is set when `cpu` is in the mask.
    /// Invariant: the last word, if any, is non-zero.
    words: Vec<u64>,
}

impl CpuMask {
    /// Returns an empty mask.
    pub(crate) fn new() -> Self {
        Self { words: Vec::new() }
    }

    /// Returns the mask holding exactly `cpus` (duplicates are fine).
    pub(crate) fn from_cpus(cpus: impl IntoIterator<Item = usize>) -> Self {
        let mut mask = Self::new();
        for cpu in cpus {
            mask.set(cpu);
        }
        mask
    }

    /// Parses the kernel's cpulist format, as found in sysfs files such as
    /// `/sys/devices/system/cpu/online`: comma-separated CPU ids and
    /// inclusive ranges, e.g. `"0-3,8,10-11\n"`.
    ///
    /// Like the kernel's `bitmap_parselist()`, a range may carry a stride
    /// suffix `:used/group` (`"0-15:2/4"` is `0,1,4,5,8,9,12,13`).  Leading
    /// and trailing whitespace (the newline sysfs appends) is ignored, as is
    /// whitespace around each comma-separated item.  An empty string is the
    /// empty mask.
    ///
    /// Returns `None` when the text is malformed: an empty item, a
    /// non-numeric id, a reversed range, a bad stride, or an id above an
    /// internal sanity cap of about a million CPUs.
    pub(crate) fn parse_list(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut mask = Self::new();
        if s.is_empty() {
            return Some(mask);
        }
        for item in s.split(',') {
            let item = item.trim();
            let (range, stride) = match item.split_once(':') {
                Some((range, stride)) => (range, Some(stride)),
                None => (item, None),
            };
            let (start, end) = match range.split_once('-') {
                Some((start, end)) => (parse_cpu_id(start)?, parse_cpu_id(end)?),
                None => {
                    // A stride only makes sense after a range ("5:1/2" is
                    // rejected by the kernel too).
                    if stride.is_some() {
                        return None;
                    }
                    let cpu = parse_cpu_id(range)?;
                    (cpu, cpu)
                }
            };
            if start > end {
                return None;
            }
            // Without a stride every CPU of the range is set, which is the
            // same as "used 1 of every group of 1".
            let (used, group) = match stride {
                Some(stride) => {
                    let (used, group) = stride.split_once('/')?;
                    (parse_cpu_id(used)?, parse_cpu_id(group)?)
                }
                None => (1, 1),
            };
            if group == 0 || used > group {
                return None;
            }
            for cpu in start..=end {
                if (cpu - start) % group < used {
                    mask.set(cpu);
                }
            }
        }
        Some(mask)
    }

    /// Empties the mask, keeping its storage (for masks rebuilt often).
    pub(crate) fn clear(&mut self) {
        self.words.clear();
    }

    /// Adds `cpu` to the mask.
    pub(crate) fn set(&mut self, cpu: usize) {
        let word = cpu / WORD_BITS;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (cpu % WORD_BITS);
    }

    /// Returns whether `cpu` is in the mask.
    pub(crate) fn contains(&self, cpu: usize) -> bool {
        self.words
            .get(cpu / WORD_BITS)
            .is_some_and(|&word| word & (1 << (cpu % WORD_BITS)) != 0)
    }

    /// Returns whether the mask holds no CPU.
    pub(crate) fn is_empty(&self) -> bool {
        // Normalized: an empty mask has no words.
        self.words.is_empty()
    }

    /// Returns the number of CPUs in the mask.
    pub(crate) fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Returns the lowest CPU in the mask.
    pub(crate) fn first(&self) -> Option<usize> {
        self.iter().next()
    }

    /// Returns the highest CPU in the mask.
    pub(crate) fn last(&self) -> Option<usize> {
        // Normalized: the last word, if any, has a bit set.
        let top = *self.words.last()?;
        let bit = WORD_BITS - 1 - top.leading_zeros() as usize;
        Some((self.words.len() - 1) * WORD_BITS + bit)
    }

    /// Iterates over the CPUs of the mask in ascending order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(index, &word)| WordBits {
                word,
                base: index * WORD_BITS,
            })
    }

    /// Returns the CPUs that are in both `self` and `other`.
    pub(crate) fn and(&self, other: &CpuMask) -> CpuMask {
        let mut out = CpuMask {
            words: self
                .words
                .iter()
                .zip(&other.words)
                .map(|(a, b)| a & b)
                .collect(),
        };
        out.normalize();
        out
    }

    /// Returns the CPUs that are in `self`, `other` or both.
    pub(crate) fn or(&self, other: &CpuMask) -> CpuMask {
        let (long, short) = if self.words.len() >= other.words.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut out = long.clone();
        for (a, b) in out.words.iter_mut().zip(&short.words) {
            *a |= b;
        }
        // The longer operand ends in a non-zero word, so `out` does too.
        out
    }

    /// Returns whether every CPU of `self` is also in `other`.
    #[cfg(test)]
    pub(crate) fn is_subset(&self, other: &CpuMask) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(index, &word)| word & !other.words.get(index).copied().unwrap_or(0) == 0)
    }

    /// Formats the mask the way the kernel's `tools/workqueue/wq_dump.py`
    /// (`cpumask_str()`) prints one, so that dumps can be compared.
    ///
    /// The CPUs are cut into 32-bit groups starting from CPU 0.  Every group
    /// before the one holding the highest CPU is printed as Python's `hex()`
    /// would (`0x0`, `0xff`, ...) followed by a space; the last group is
    /// printed as eight zero-padded hex digits.  So `{0,1}` is `"00000003"`,
    /// `{0,40}` is `"0x1 00000100"`, and the empty mask is `""`.
    pub(crate) fn to_hex(&self) -> String {
        use fmt::Write as _;

        let mut out = String::new();
        let mut base = 0;
        let mut group: u64 = 0;
        for cpu in self.iter() {
            while cpu - base >= 32 {
                // `{:#x}` writes 0 as "0x0", just like Python's hex().
                let _ = write!(out, "{group:#x} ");
                base += 32;
                group = 0;
            }
            group |= 1 << (cpu - base);
        }
        if group > 0 {
            let _ = write!(out, "{group:08x}");
        }
        // wq_dump.py strips the result; only matters for odd inputs, but
        // keep the behaviour identical.
        out.trim().to_string()
    }

    /// Formats the mask in the kernel's cpulist format, e.g. `"0-3,8"`
    /// (without the trailing newline sysfs adds).  The empty mask is `""`.
    pub(crate) fn to_list(&self) -> String {
        use fmt::Write as _;

        let mut out = String::new();
        let mut cpus = self.iter().peekable();
        while let Some(start) = cpus.next() {
            // Extend the run while the next CPU is adjacent.
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end += 1;
                cpus.next();
            }
            if !out.is_empty() {
                out.push(',');
            }
            let _ = if start == end {
                write!(out, "{start}")
            } else {
                write!(out, "{start}-{end}")
            };
        }
        out
    }

    /// Converts the mask to a [`CpuSet`] for `sched_setaffinity()`.
    ///
    /// A `CpuSet` has room for [`CpuSet::MAX_CPU`] CPUs (glibc's
    /// `CPU_SETSIZE`, 1024); CPUs at or above that are silently left out.
    pub(crate) fn to_rustix(&self) -> CpuSet {
        let mut set = CpuSet::new();
        for cpu in self.iter().take_while(|&cpu| cpu < CpuSet::MAX_CPU) {
            set.set(cpu);
        }
        set
    }

    /// Drops trailing zero words to restore the invariant.
    fn normalize(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }
}

impl FromIterator<usize> for CpuMask {
    fn from_iter<I: IntoIterator<Item = usize>>(cpus: I) -> Self {
        Self::from_cpus(cpus)
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.to_list())
    }
}

/// Iterator over the set bits of one bitmap word, lowest first.
struct WordBits {
    /// Bits not yet returned.
    word: u64,
    /// CPU id of bit 0 of `word`.
    base: usize,
}

impl Iterator for WordBits {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.word == 0 {
            return None;
        }
        let bit = self.word.trailing_zeros() as usize;
        // Clear the lowest set bit.
        self.word &= self.word - 1;
        Some(self.base + bit)
    }
}

/// Parses one CPU id of a cpulist: decimal digits only (no sign, no spaces),
/// at most [`MAX_PARSED_CPU`].
fn parse_cpu_id(s: &str) -> Option<usize> {
    parse_decimal(s).filter(|&cpu| cpu <= MAX_PARSED_CPU)
}

/// Parses a non-empty string of ASCII decimal digits.
///
/// Stricter than `str::parse`, which would also take a leading `+`.
pub(crate) fn parse_decimal(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
