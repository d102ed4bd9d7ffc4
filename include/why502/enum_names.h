// One name table per enum. Every enum that reaches a sink or a capture specialises EnumNames with a
// constexpr table; writing (enum_name), reading (enum_from_name) and listing (the JSON schema's
// "enum") all use that table, so a new enumerator is named in exactly one place.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <utility>

namespace why502 {

template <class E> struct EnumNames; // specialise: static constexpr std::pair<E, std::string_view> table[]

template <class E> constexpr std::string_view enum_name(E value) {
  for (const auto &[e, name] : EnumNames<E>::table)
    if (e == value)
      return name;
  return "?";
}

template <class E> constexpr std::optional<E> enum_from_name(std::string_view name) {
  for (const auto &[e, n] : EnumNames<E>::table)
    if (n == name)
      return e;
  return std::nullopt;
}

// Every name of one enum, for schemas and checks.
template <class E> constexpr auto enum_names() {
  constexpr size_t n = std::size(EnumNames<E>::table);
  std::array<std::string_view, n> out{};
  for (size_t i = 0; i < n; ++i)
    out[i] = EnumNames<E>::table[i].second;
  return out;
}

// A table names each enumerator once (a compile-time check each specialisation runs).
template <class E> constexpr bool names_are_unique() {
  const auto &t = EnumNames<E>::table;
  for (size_t i = 0; i < std::size(t); ++i)
    for (size_t j = i + 1; j < std::size(t); ++j)
      if (t[i].first == t[j].first || t[i].second == t[j].second)
        return false;
  return true;
}

} // namespace why502
