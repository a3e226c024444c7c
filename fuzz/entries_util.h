// Comparing decoded pack entries (pack header and index file targets).
#pragma once

#include <vector>

#include "storage/blob.h"

namespace custos::fuzz {

inline bool SameEntry(const storage::PackEntry& a, const storage::PackEntry& b) {
  return a.id == b.id && a.type == b.type && a.compression == b.compression &&
         a.offset == b.offset && a.stored_length == b.stored_length && a.raw_length == b.raw_length;
}

inline bool SameEntries(const std::vector<storage::PackEntry>& a, const std::vector<storage::PackEntry>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!SameEntry(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace custos::fuzz
