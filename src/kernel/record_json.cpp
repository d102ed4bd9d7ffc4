// The capture format (`events --json`, `watch --capture`, `analyze`'s input) and its JSON Schema,
// all generated from the records' field lists (include/why502/kernel_event.h).
#include "why502/kernel_event.h"

#include <algorithm>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/time.h"

namespace why502 {

using nlohmann::json;

static_assert(names_are_unique<ConnFailure>() && names_are_unique<Syscall>() && names_are_unique<DropReason>());

namespace {

struct JsonWriter {
  json &j;
  template <class T> void operator()(const char *key, const T &value, unsigned = kFieldRequired) {
    if constexpr (std::is_same_v<T, Endpoint>)
      j[key] = value.str();
    else if constexpr (std::is_enum_v<T>)
      j[key] = enum_name(value);
    else
      j[key] = value;
  }
  void named(const char *key, const int &value, const char *name_key, std::string (*namer)(int),
             unsigned = kFieldRequired) {
    j[key] = value;
    j[name_key] = namer(value);
  }
};

struct JsonReader {
  const json &j;
  template <class T> void operator()(const char *key, T &value, unsigned flags = kFieldRequired) {
    auto it = j.find(key);
    if (it == j.end()) {
      if (flags & kFieldOptional)
        return;
      throw std::runtime_error(std::string("missing field \"") + key + "\"");
    }
    if constexpr (std::is_same_v<T, Endpoint>) {
      auto e = Address::parse(it->template get<std::string>());
      if (!e)
        throw std::runtime_error(std::string("bad endpoint in ") + key);
      value = *e;
    } else if constexpr (std::is_enum_v<T>) {
      const auto name = it->template get<std::string>();
      auto e = enum_from_name<T>(name);
      if constexpr (requires { EnumNames<T>::fallback; }) {
        if (!e)
          e = EnumNames<T>::fallback;
      }
      if (!e)
        throw std::runtime_error(std::string("unknown ") + key + " \"" + name + "\"");
      value = *e;
    } else {
      value = it->template get<T>();
    }
  }
  void named(const char *key, int &value, const char *, std::string (*)(int), unsigned flags = kFieldRequired) {
    (*this)(key, value, flags);
  }
};

// JSON Schema of one record's fields.
struct SchemaWriter {
  json &properties;
  json &required;
  template <class T> static json type_of() {
    if constexpr (std::is_same_v<T, bool>)
      return {{"type", "boolean"}};
    else if constexpr (std::is_same_v<T, std::string>)
      return {{"type", "string"}};
    else if constexpr (std::is_same_v<T, Endpoint>)
      return {{"type", "string"}, {"description", "address:port, IPv6 in brackets"}};
    else if constexpr (std::is_enum_v<T>) {
      json names = json::array();
      for (auto n : enum_names<T>())
        names.push_back(n);
      return {{"type", "string"}, {"enum", names}};
    } else if constexpr (std::is_unsigned_v<T>)
      return {{"type", "integer"}, {"minimum", 0}};
    else
      return {{"type", "integer"}};
  }
  template <class T> void operator()(const char *key, const T &, unsigned flags = kFieldRequired) {
    properties[key] = type_of<T>();
    if (!(flags & kFieldOptional))
      required.push_back(key);
  }
  void named(const char *key, const int &, const char *name_key, std::string (*)(int),
             unsigned flags = kFieldRequired) {
    properties[key] = type_of<int>();
    properties[name_key] = type_of<std::string>();
    if (!(flags & kFieldOptional)) {
      required.push_back(key);
      required.push_back(name_key);
    }
  }
};

// Calls f(const Record &) once per record type, with a default-constructed record.
template <class F> void for_each_record_type(F &&f) {
  [&]<size_t... I>(std::index_sequence<I...>) {
    (f(static_cast<const std::variant_alternative_t<I, KernelRecord> &>(std::variant_alternative_t<I, KernelRecord>{})),
     ...);
  }(std::make_index_sequence<std::variant_size_v<KernelRecord>>{});
}

struct HiddenKeys {
  std::vector<std::string> &out;
  template <class T> void operator()(const char *key, const T &, unsigned flags = kFieldRequired) {
    if (flags & (kFieldTiming | kFieldBookkeeping))
      out.push_back(key);
  }
  void named(const char *, const int &, const char *, std::string (*)(int), unsigned = kFieldRequired) {}
};

template <size_t I = 0> std::optional<KernelRecord> record_from_json(std::string_view name, const json &j) {
  if constexpr (I == std::variant_size_v<KernelRecord>) {
    return std::nullopt;
  } else {
    using T = std::variant_alternative_t<I, KernelRecord>;
    if (T::kName != name)
      return record_from_json<I + 1>(name, j);
    T r;
    fields(r, JsonReader{j});
    return KernelRecord{std::move(r)};
  }
}

} // namespace

json to_json(const KernelEvent &ev) {
  json j;
  j["type"] = "event";
  j["event"] = event_name(ev.record);
  j["time"] = base::format_wall_time(ev.wall_ns);
  j["boot_ns"] = ev.boot_ns;
  j["cpu"] = ev.cpu;
  j["host"] = ev.host;
  std::visit([&](const auto &r) { fields(r, JsonWriter{j}); }, ev.record);
  return j;
}

Result<KernelEvent> event_from_json(const json &j) {
  try {
    KernelEvent ev;
    const std::string name = j.at("event").get<std::string>();
    ev.boot_ns = j.at("boot_ns").get<uint64_t>();
    auto wall = base::parse_wall_time(j.at("time").get<std::string>());
    if (!wall)
      return Result<KernelEvent>::failure("bad time field");
    ev.wall_ns = *wall;
    ev.cpu = j.value("cpu", 0u);
    ev.host = j.value("host", false);
    auto record = record_from_json(name, j);
    if (!record)
      return Result<KernelEvent>::failure("unknown event \"" + name + "\"");
    ev.record = std::move(*record);
    return ev;
  } catch (const std::exception &e) {
    return Result<KernelEvent>::failure(e.what());
  }
}

json event_schema(bool evidence_item) {
  json variants = json::array();
  auto one = [&]<class T>(const T &r) {
    json properties = {{"event", {{"const", T::kName}}},
                       {"time", {{"type", "string"}, {"description", "wall time, 2026-11-30T17:02:01.123456Z"}}},
                       {"boot_ns", {{"type", "integer"}, {"minimum", 0}}},
                       {"cpu", {{"type", "integer"}, {"minimum", 0}}},
                       {"host", {{"type", "boolean"}}}};
    json required = {"event", "time", "boot_ns"};
    if (!evidence_item) {
      properties["type"] = {{"const", "event"}};
      required.push_back("type");
    }
    fields(r, SchemaWriter{properties, required});
    variants.push_back({{"title", T::kName},
                        {"type", "object"},
                        {"properties", properties},
                        {"required", required},
                        {"additionalProperties", false}});
  };
  for_each_record_type(one);
  return {{"title", evidence_item ? "a kernel record cited as evidence (no \"type\")"
                                  : "a kernel record: a capture line with \"type\": \"event\""},
          {"oneOf", variants}};
}

bool is_hidden_detail(std::string_view key) {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out;
    for_each_record_type([&](const auto &r) { fields(r, HiddenKeys{out}); });
    return out;
  }();
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

} // namespace why502
