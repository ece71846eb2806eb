/* kprobe: pt_regs reads, tracing helpers, a ring buffer record. */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>

struct event {
	__u32 pid;
	__u32 tgid;
	__u64 arg0;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 128);
} calls SEC(".maps");

SEC("kprobe/do_sys_openat2")
int trace_open(struct pt_regs *regs)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id;
	__u64 zero = 0, *n = bpf_map_lookup_elem(&calls, &pid);
	if (!n) {
		bpf_map_update_elem(&calls, &pid, &zero, BPF_NOEXIST);
		n = bpf_map_lookup_elem(&calls, &pid);
		if (!n)
			return 0;
	}
	*n += 1;
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = pid;
	e->tgid = id >> 32;
	e->arg0 = regs->rdi;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("kprobe/vfs_read")
int trace_read(struct pt_regs *regs)
{
	__u64 val = 0;
	bpf_probe_read_kernel(&val, sizeof(val), (void *)regs->rsi);
	char fmt[] = "read %llx\n";
	bpf_trace_printk(fmt, sizeof(fmt), val);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
