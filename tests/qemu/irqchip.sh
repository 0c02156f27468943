# irqchip suite: the full in-kernel irqchip (KVM_CREATE_IRQCHIP: two 8259A
# PICs, the I/O APIC and the local APICs; nsvm-apitest irqchip_* cases,
# tests/apitest/src/irqchip.rs, payload irqchip16.bin) on /dev/nsvm and
# then on /dev/kvm (kvm_amd) in the same boot; every case must pass on
# both, and the kernel log must stay clean.
. /tests/lib.sh
apitest_both irqchip irqchip_errnos irqchip_pic irqchip_ioapic
finish
