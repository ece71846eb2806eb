/* A CO-RE read (recorded, refused by resolve) and a SEC("?...") program (autoload off). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
struct task_struct { int pid; int tgid; } __attribute__((preserve_access_index));
SEC("?kprobe/x") int k(struct task_struct *t) { return BPF_CORE_READ(t, tgid); }
SEC("xdp") int plain(void *c) { return 2; }
char _license[] SEC("license") = "GPL";
