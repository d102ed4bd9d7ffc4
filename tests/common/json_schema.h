// A small JSON Schema validator for the tests: the subset docs/schema/why502-lines.schema.json uses
// (type, const, enum, properties, required, additionalProperties, items, oneOf, anyOf, $ref to
// "#/$defs/NAME", minimum). validate() returns one message per violation, with its JSON path.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace why502::test {

class JsonSchema {
public:
  explicit JsonSchema(nlohmann::json root) : root_(std::move(root)) {}

  static JsonSchema load(const std::string &path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return JsonSchema(nlohmann::json::parse(ss.str()));
  }

  const nlohmann::json &root() const { return root_; }

  // Against the root schema, or against "#/$defs/<def>".
  std::vector<std::string> validate(const nlohmann::json &value, const std::string &def = "") const {
    std::vector<std::string> errors;
    check(value, def.empty() ? root_ : root_.at("$defs").at(def), "$", errors);
    return errors;
  }

private:
  static bool has_type(const nlohmann::json &v, const std::string &t) {
    if (t == "object")
      return v.is_object();
    if (t == "array")
      return v.is_array();
    if (t == "string")
      return v.is_string();
    if (t == "integer")
      return v.is_number_integer();
    if (t == "number")
      return v.is_number();
    if (t == "boolean")
      return v.is_boolean();
    if (t == "null")
      return v.is_null();
    return false;
  }

  void check(const nlohmann::json &v, const nlohmann::json &s, const std::string &path,
             std::vector<std::string> &errors) const {
    if (s.is_boolean()) {
      if (!s.get<bool>())
        errors.push_back(path + ": not allowed");
      return;
    }
    if (auto it = s.find("$ref"); it != s.end()) {
      const std::string ref = it->get<std::string>();
      const std::string prefix = "#/$defs/";
      if (ref.rfind(prefix, 0) != 0)
        throw std::runtime_error("unsupported $ref " + ref);
      check(v, root_.at("$defs").at(ref.substr(prefix.size())), path, errors);
    }
    if (auto it = s.find("type"); it != s.end()) {
      bool ok = false;
      if (it->is_array()) {
        for (const auto &t : *it)
          ok = ok || has_type(v, t.get<std::string>());
      } else {
        ok = has_type(v, it->get<std::string>());
      }
      if (!ok) {
        errors.push_back(path + ": expected " + it->dump() + ", got " + v.dump());
        return;
      }
    }
    if (auto it = s.find("const"); it != s.end() && v != *it)
      errors.push_back(path + ": expected " + it->dump() + ", got " + v.dump());
    if (auto it = s.find("enum"); it != s.end()) {
      bool found = false;
      for (const auto &e : *it)
        found = found || e == v;
      if (!found)
        errors.push_back(path + ": " + v.dump() + " is not one of " + it->dump());
    }
    if (auto it = s.find("minimum"); it != s.end() && v.is_number() && v.get<double>() < it->get<double>())
      errors.push_back(path + ": " + v.dump() + " below " + it->dump());
    if (auto it = s.find("maximum"); it != s.end() && v.is_number() && v.get<double>() > it->get<double>())
      errors.push_back(path + ": " + v.dump() + " above " + it->dump());
    if (v.is_object()) {
      const auto props = s.value("properties", nlohmann::json::object());
      if (auto req = s.find("required"); req != s.end())
        for (const auto &k : *req)
          if (!v.contains(k.get<std::string>()))
            errors.push_back(path + ": missing \"" + k.get<std::string>() + "\"");
      for (auto p = v.begin(); p != v.end(); ++p) {
        if (props.contains(p.key())) {
          check(*p, props[p.key()], path + "." + p.key(), errors);
        } else if (auto extra = s.find("additionalProperties"); extra != s.end()) {
          check(*p, *extra, path + "." + p.key(), errors);
        }
      }
    }
    if (v.is_array())
      if (auto items = s.find("items"); items != s.end())
        for (size_t i = 0; i < v.size(); ++i)
          check(v[i], *items, path + "[" + std::to_string(i) + "]", errors);
    for (const char *combinator : {"oneOf", "anyOf"}) {
      auto it = s.find(combinator);
      if (it == s.end())
        continue;
      size_t matched = 0;
      std::string why;
      for (const auto &option : *it) {
        std::vector<std::string> sub;
        check(v, option, path, sub);
        if (sub.empty())
          ++matched;
        else if (why.empty() || sub.size() < size_t(std::count(why.begin(), why.end(), ';') + 1))
          why = sub.front();
      }
      const bool ok = std::string(combinator) == "oneOf" ? matched == 1 : matched >= 1;
      if (!ok)
        errors.push_back(path + ": matches " + std::to_string(matched) + " of the " + combinator +
                         " options (closest: " + why + ")");
    }
  }

  nlohmann::json root_;
};

} // namespace why502::test
