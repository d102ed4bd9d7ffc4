// bench/floor/floor.bpf.c must sit on exactly the hooks why502 attaches at start (its tp_btf
// programs), or the bench's "cost above the floor" compares different things.
#include <gtest/gtest.h>

#include <bpf/libbpf.h>

#include <set>
#include <string>

namespace {

std::set<std::string> tp_btf_sections(const char *path) {
  std::set<std::string> out;
  bpf_object *obj = bpf_object__open_file(path, nullptr);
  if (!obj)
    return out;
  bpf_program *p;
  bpf_object__for_each_program(p, obj) {
    std::string s = bpf_program__section_name(p);
    if (s.rfind("tp_btf/", 0) == 0)
      out.insert(s);
  }
  bpf_object__close(obj);
  return out;
}

} // namespace

TEST(BenchFloor, EmptyProgramsOnExactlyWhy502sHooks) {
  auto why502 = tp_btf_sections(WHY502_BPF_OBJECT);
  auto floor = tp_btf_sections(WHY502_FLOOR_OBJECT);
  EXPECT_GE(why502.size(), 6u);
  EXPECT_EQ(floor, why502);
}
