// The ABI between bpf/why502.bpf.c and the C++ decoder: every struct of include/why502/events.h,
// its size and each field's offset and size, as g++ lays it out here, against what clang laid out
// in the BPF object (its BTF; the object keeps every struct there through its `abi_types` map).
// A field added on one side only, a changed type, or padding that differs fails here, not in a
// garbled capture. Tetragon's alignchecker is the model.
#include <gtest/gtest.h>

#include <bpf/btf.h>

#include <cstddef>
#include <fstream>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "why502/events.h"

namespace {

struct Field {
  std::string name;
  size_t offset, size;
};
struct Layout {
  std::string name;
  size_t size;
  std::vector<Field> fields;
};

#define F(S, m) Field{#m, offsetof(S, m), sizeof(S::m)}

// Every field of every struct: the test also fails when BTF has a field this list lacks.
const std::vector<Layout> &layouts() {
  static const std::vector<Layout> all = {
      {"why502_header",
       sizeof(why502_header),
       {F(why502_header, kind), F(why502_header, flags), F(why502_header, ts_ns), F(why502_header, cpu),
        F(why502_header, pad)}},
      {"why502_tuple",
       sizeof(why502_tuple),
       {F(why502_tuple, saddr), F(why502_tuple, daddr), F(why502_tuple, family), F(why502_tuple, sport),
        F(why502_tuple, dport), F(why502_tuple, pad)}},
      {"why502_conn_fail",
       sizeof(why502_conn_fail),
       {F(why502_conn_fail, hdr),          F(why502_conn_fail, tuple),          F(why502_conn_fail, pid),
        F(why502_conn_fail, tid),          F(why502_conn_fail, comm),           F(why502_conn_fail, failure),
        F(why502_conn_fail, sk_err),       F(why502_conn_fail, syn_retrans),    F(why502_conn_fail, retrans),
        F(why502_conn_fail, last_state),   F(why502_conn_fail, pad),            F(why502_conn_fail, bytes_received),
        F(why502_conn_fail, bytes_acked),  F(why502_conn_fail, ts_syn_sent),    F(why502_conn_fail, ts_established),
        F(why502_conn_fail, ts_reset),     F(why502_conn_fail, ts_fin_received), F(why502_conn_fail, ts_error),
        F(why502_conn_fail, ts_close),     F(why502_conn_fail, conn_id)}},
      {"why502_syscall_err",
       sizeof(why502_syscall_err),
       {F(why502_syscall_err, hdr), F(why502_syscall_err, pid), F(why502_syscall_err, tid),
        F(why502_syscall_err, comm), F(why502_syscall_err, syscall), F(why502_syscall_err, err),
        F(why502_syscall_err, fd), F(why502_syscall_err, family), F(why502_syscall_err, port),
        F(why502_syscall_err, addr), F(why502_syscall_err, unix_path), F(why502_syscall_err, pad2)}},
      {"why502_drop",
       sizeof(why502_drop),
       {F(why502_drop, hdr), F(why502_drop, tuple), F(why502_drop, reason), F(why502_drop, reason_code),
        F(why502_drop, tcp_flags), F(why502_drop, pad)}},
      {"why502_reset_sent",
       sizeof(why502_reset_sent),
       {F(why502_reset_sent, hdr), F(why502_reset_sent, tuple), F(why502_reset_sent, pid), F(why502_reset_sent, state),
        F(why502_reset_sent, has_socket), F(why502_reset_sent, pad)}},
      {"why502_oom_victim",
       sizeof(why502_oom_victim),
       {F(why502_oom_victim, hdr), F(why502_oom_victim, pid), F(why502_oom_victim, uid), F(why502_oom_victim, comm),
        F(why502_oom_victim, total_vm_pages), F(why502_oom_victim, anon_rss_pages),
        F(why502_oom_victim, file_rss_pages), F(why502_oom_victim, shmem_rss_pages)}},
      {"why502_signal",
       sizeof(why502_signal),
       {F(why502_signal, hdr), F(why502_signal, sig), F(why502_signal, result), F(why502_signal, target_pid),
        F(why502_signal, target_tid), F(why502_signal, target_comm), F(why502_signal, sender_pid),
        F(why502_signal, sender_tid), F(why502_signal, sender_comm), F(why502_signal, si_code),
        F(why502_signal, pad)}},
      {"why502_exit",
       sizeof(why502_exit),
       {F(why502_exit, hdr), F(why502_exit, pid), F(why502_exit, ppid), F(why502_exit, comm), F(why502_exit, exit_code),
        F(why502_exit, watched)}},
      {"why502_watch",
       sizeof(why502_watch),
       {F(why502_watch, hdr), F(why502_watch, pid), F(why502_watch, parent_pid), F(why502_watch, comm),
        F(why502_watch, via), F(why502_watch, pad)}},
      {"why502_listen_change",
       sizeof(why502_listen_change),
       {F(why502_listen_change, hdr), F(why502_listen_change, pid), F(why502_listen_change, tid),
        F(why502_listen_change, comm), F(why502_listen_change, family), F(why502_listen_change, port),
        F(why502_listen_change, netns), F(why502_listen_change, addr), F(why502_listen_change, cookie),
        F(why502_listen_change, listening), F(why502_listen_change, exiting), F(why502_listen_change, pad)}},
      {"why502_unix_listener_exit",
       sizeof(why502_unix_listener_exit),
       {F(why502_unix_listener_exit, hdr), F(why502_unix_listener_exit, pid), F(why502_unix_listener_exit, fd),
        F(why502_unix_listener_exit, comm), F(why502_unix_listener_exit, inode), F(why502_unix_listener_exit, netns),
        F(why502_unix_listener_exit, path_len), F(why502_unix_listener_exit, pad), F(why502_unix_listener_exit, path)}},
  };
  return all;
}

#undef F

struct BtfDeleter {
  void operator()(btf *b) const { btf__free(b); }
};

std::unique_ptr<btf, BtfDeleter> object_btf() {
  btf *b = btf__parse_elf(WHY502_BPF_OBJECT, nullptr);
  return std::unique_ptr<btf, BtfDeleter>(b);
}

const btf_type *struct_named(const btf *b, const std::string &name) {
  int id = btf__find_by_name_kind(b, name.c_str(), BTF_KIND_STRUCT);
  return id > 0 ? btf__type_by_id(b, id) : nullptr;
}

} // namespace

TEST(AbiLayout, EveryStructMatchesTheBpfObjectFieldByField) {
  auto b = object_btf();
  ASSERT_TRUE(b) << "cannot read BTF from " << WHY502_BPF_OBJECT;
  for (const Layout &l : layouts()) {
    SCOPED_TRACE(l.name);
    const btf_type *t = struct_named(b.get(), l.name);
    ASSERT_NE(t, nullptr) << "struct " << l.name << " is not in the BPF object's BTF (add it to why502_abi_types)";
    EXPECT_EQ(t->size, l.size) << "sizeof differs between clang -target bpf and g++";
    const btf_member *m = btf_members(t);
    ASSERT_EQ(btf_vlen(t), l.fields.size()) << "BTF has a different number of fields than this test checks";
    for (unsigned i = 0; i < btf_vlen(t); ++i, ++m) {
      const std::string name = btf__name_by_offset(b.get(), m->name_off);
      auto f = std::find_if(l.fields.begin(), l.fields.end(), [&](const Field &x) { return x.name == name; });
      ASSERT_NE(f, l.fields.end()) << "field " << name << " is in BTF, not in this test's list";
      EXPECT_EQ(btf_member_bit_offset(t, i) / 8, f->offset) << l.name << "." << name << " offset";
      EXPECT_EQ(size_t(btf__resolve_size(b.get(), m->type)), f->size) << l.name << "." << name << " size";
    }
  }
}

// Every struct events.h declares is in the anchor (so in BTF) and in the list above.
TEST(AbiLayout, EveryStructOfTheHeaderIsChecked) {
  std::ifstream in(WHY502_SOURCE_DIR "/include/why502/events.h");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string header = ss.str();
  std::set<std::string> declared;
  std::regex decl(R"(\nstruct (why502_\w+) \{)");
  for (auto it = std::sregex_iterator(header.begin(), header.end(), decl); it != std::sregex_iterator(); ++it)
    declared.insert((*it)[1]);
  std::set<std::string> checked;
  for (const Layout &l : layouts())
    checked.insert(l.name);
  EXPECT_EQ(declared, checked);

  auto b = object_btf();
  ASSERT_TRUE(b);
  const btf_type *anchor = struct_named(b.get(), "why502_abi_types");
  ASSERT_NE(anchor, nullptr);
  std::set<std::string> anchored;
  const btf_member *m = btf_members(anchor);
  for (unsigned i = 0; i < btf_vlen(anchor); ++i, ++m)
    anchored.insert(btf__name_by_offset(b.get(), btf__type_by_id(b.get(), m->type)->name_off));
  EXPECT_EQ(anchored, declared);
}
