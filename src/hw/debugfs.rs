// SPDX-License-Identifier: GPL-2.0
//! `/sys/kernel/debug/nsvm`: the root directory and per-VM/per-vCPU entries.

use kernel::ffi::c_void;

extern "C" {
    fn nsvm_debugfs_init();
    fn nsvm_debugfs_exit();
    fn nsvm_debugfs_dir(name: *const u8, parent: *mut c_void) -> *mut c_void;
    fn nsvm_debugfs_vmcb_file(name: *const u8, dir: *mut c_void, vcpu: *mut c_void) -> *mut c_void;
    fn nsvm_debugfs_remove(dentry: *mut c_void);
}

/// `/sys/kernel/debug/nsvm` for the life of the module.
///
/// # Invariants
///
/// At most one exists; it is created before any VM and dropped after the
/// device is gone (field order in the module struct).
pub(crate) struct DebugfsRoot(());

impl DebugfsRoot {
    /// Creates the directory (a no-op without debugfs).
    pub(crate) fn new() -> Self {
        // SAFETY: called once at module load.
        unsafe { nsvm_debugfs_init() };
        Self(())
    }
}

impl Drop for DebugfsRoot {
    fn drop(&mut self) {
        // SAFETY: every VM (and so every entry below) is gone: the module
        // cannot unload while an fd is open.
        unsafe { nsvm_debugfs_exit() };
    }
}

/// A debugfs entry removed on drop (with everything below it).
///
/// # Invariants
///
/// `0` holds null or a dentry returned by the shim, removed once on drop.
pub(crate) struct DebugfsEntry(core::sync::atomic::AtomicPtr<c_void>);

impl DebugfsEntry {
    /// An empty entry.
    pub(crate) const fn empty() -> Self {
        Self(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()))
    }

    fn cname(name: &[u8], buf: &mut [u8; 32]) -> *const u8 {
        let n = name.len().min(31);
        buf[..n].copy_from_slice(&name[..n]);
        buf[n] = 0;
        buf.as_ptr()
    }

    /// Makes this entry the directory `name` under `parent` (or the root).
    pub(crate) fn make_dir(&self, name: &[u8], parent: Option<&DebugfsEntry>) {
        let mut b = [0u8; 32];
        let p = parent.map_or(core::ptr::null_mut(), |e| e.0.load(core::sync::atomic::Ordering::Acquire));
        // SAFETY: NUL-terminated name; `p` is null or a live dentry of ours
        // (the parent outlives the child: a vCPU holds its VM).
        let d = unsafe { nsvm_debugfs_dir(Self::cname(name, &mut b), p) };
        self.0.store(d, core::sync::atomic::Ordering::Release);
    }

    /// Makes this entry the vmcb dump file `name` of `vcpu` in `dir`.
    ///
    /// # Safety
    ///
    /// `vcpu` must stay valid until this entry is dropped (it must be a field
    /// of the vCPU that is dropped before the rest of it).
    pub(crate) unsafe fn make_vmcb_file(&self, name: &[u8], dir: &DebugfsEntry, vcpu: *const c_void) {
        let mut b = [0u8; 32];
        let p = dir.0.load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: NUL-terminated name, live parent; the caller keeps `vcpu`
        // valid for the file's life, and removal waits for readers.
        let d = unsafe { nsvm_debugfs_vmcb_file(Self::cname(name, &mut b), p, vcpu.cast_mut()) };
        self.0.store(d, core::sync::atomic::Ordering::Release);
    }
}

impl Drop for DebugfsEntry {
    fn drop(&mut self) {
        let d = self.0.swap(core::ptr::null_mut(), core::sync::atomic::Ordering::AcqRel);
        if !d.is_null() {
            // SAFETY: by the type invariant `d` came from the shim.
            unsafe { nsvm_debugfs_remove(d) };
        }
    }
}
