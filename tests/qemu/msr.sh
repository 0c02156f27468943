# msr suite: MSR exits to userspace and the MSR filter
# (KVM_CAP_X86_USER_SPACE_MSR, KVM_X86_SET_MSR_FILTER), the feature MSRs on
# the system fd, IA32_MISC_ENABLE and MONITOR/MWAIT with KVM's quirks
# (nsvm-apitest msr_* cases, tests/apitest/src/msr.rs) on /dev/nsvm and
# then on /dev/kvm (kvm_amd) in the same boot; every case must pass on both,
# and the kernel log must stay clean.
. /tests/lib.sh
apitest_both msr msr_filter_errnos msr_user_exit msr_features msr_mwait_quirks
finish
