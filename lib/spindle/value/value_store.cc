#include "spindle/value/value_store.h"

#include <algorithm>
#include <limits>

#include "absl/hash/hash.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spindle/common/names.h"
#include "spindle/common/status.h"

namespace spindle::value {
namespace {

std::string MakeEpoch() {
  absl::BitGen gen;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
}

absl::Status NotFoundValue(const std::string& name) {
  return NotFound("VALUE_NOT_FOUND", absl::StrCat("value '", name, "' does not exist"));
}

absl::Status Mismatch(const std::string& what) { return FailedPrecondition("TYPE_MISMATCH", what); }

std::string ElementText(const Element& element) {
  if (const auto* index = std::get_if<int64_t>(&element)) {
    return absl::StrCat("index ", *index);
  }
  return absl::StrCat("key '", std::get<std::string>(element), "'");
}

absl::StatusOr<size_t> ResolveIndex(const std::string& name, int64_t index, size_t length) {
  int64_t at = index < 0 ? index + static_cast<int64_t>(length) : index;
  if (at < 0 || at >= static_cast<int64_t>(length)) {
    return OutOfRange("INDEX_OUT_OF_RANGE",
                      absl::StrCat("index ", index, " is out of range for value '", name,
                                   "' of length ", length));
  }
  return static_cast<size_t>(at);
}

// The element of `data` addressed by `element`.
absl::StatusOr<Scalar> ReadElement(const std::string& name, const Data& data,
                                   const Element& element) {
  if (const auto* index = std::get_if<int64_t>(&element)) {
    if (const auto* a = std::get_if<std::vector<int64_t>>(&data)) {
      SPINDLE_ASSIGN_OR_RETURN(size_t at, ResolveIndex(name, *index, a->size()));
      return Scalar((*a)[at]);
    }
    if (const auto* a = std::get_if<std::vector<double>>(&data)) {
      SPINDLE_ASSIGN_OR_RETURN(size_t at, ResolveIndex(name, *index, a->size()));
      return Scalar((*a)[at]);
    }
    return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(data)),
                                 ", not an array: an index does not apply"));
  }
  const std::string& key = std::get<std::string>(element);
  const auto* map = std::get_if<Map>(&data);
  if (map == nullptr) {
    return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(data)),
                                 ", not a map: a key does not apply"));
  }
  auto it = map->find(key);
  if (it == map->end()) {
    return NotFound("KEY_NOT_FOUND", absl::StrCat("map '", name, "' has no key '", key, "'"));
  }
  return it->second;
}

// `data` with the element replaced by `scalar` (map keys may be new).
absl::StatusOr<Data> WriteElement(const std::string& name, const Data& data, const Element& element,
                                  const Scalar& scalar) {
  if (const auto* index = std::get_if<int64_t>(&element)) {
    if (const auto* a = std::get_if<std::vector<int64_t>>(&data)) {
      SPINDLE_ASSIGN_OR_RETURN(size_t at, ResolveIndex(name, *index, a->size()));
      const auto* v = std::get_if<int64_t>(&scalar);
      if (v == nullptr) {
        return Mismatch(
            absl::StrCat("value '", name, "' is an int64 array: its elements take int64"));
      }
      auto copy = *a;
      copy[at] = *v;
      return Data(std::move(copy));
    }
    if (const auto* a = std::get_if<std::vector<double>>(&data)) {
      SPINDLE_ASSIGN_OR_RETURN(size_t at, ResolveIndex(name, *index, a->size()));
      double v;
      if (const auto* d = std::get_if<double>(&scalar)) {
        v = *d;
      } else if (const auto* i = std::get_if<int64_t>(&scalar)) {
        v = static_cast<double>(*i);
      } else {
        return Mismatch(
            absl::StrCat("value '", name, "' is a double array: its elements take numbers"));
      }
      auto copy = *a;
      copy[at] = v;
      return Data(std::move(copy));
    }
    return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(data)),
                                 ", not an array: an index does not apply"));
  }
  const auto* map = std::get_if<Map>(&data);
  if (map == nullptr) {
    return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(data)),
                                 ", not a map: a key does not apply"));
  }
  Map copy = *map;
  copy[std::get<std::string>(element)] = scalar;
  return Data(std::move(copy));
}

// `current + delta` for a number; TYPE_MISMATCH / INT64_OVERFLOW otherwise.
absl::StatusOr<Scalar> AddScalar(const std::string& what, const Scalar& current,
                                 const Delta& delta) {
  if (const auto* i = std::get_if<int64_t>(&current)) {
    const auto* d = std::get_if<int64_t>(&delta);
    if (d == nullptr) {
      return Mismatch(absl::StrCat(what, " is an int64: add an int64 delta, not a double"));
    }
    int64_t sum;
    if (__builtin_add_overflow(*i, *d, &sum)) {
      return OutOfRange("INT64_OVERFLOW", absl::StrCat("adding ", *d, " to ", what, " (", *i,
                                                       ") overflows int64; nothing changed"));
    }
    return Scalar(sum);
  }
  if (const auto* x = std::get_if<double>(&current)) {
    double add = std::holds_alternative<double>(delta)
                     ? std::get<double>(delta)
                     : static_cast<double>(std::get<int64_t>(delta));
    return Scalar(*x + add);
  }
  return Mismatch(absl::StrCat(what, " is not a number (",
                               std::holds_alternative<Bytes>(current) ? "bytes" : "string",
                               "): add applies to int64 and double"));
}

Scalar DeltaScalar(const Delta& delta) {
  if (const auto* i = std::get_if<int64_t>(&delta)) {
    return Scalar(*i);
  }
  return Scalar(std::get<double>(delta));
}

}  // namespace

ValueStore::ValueStore(TimerService& timers, SessionHooks* sessions, StoreOptions options)
    : timers_(timers), sessions_(sessions), options_(options), epoch_(MakeEpoch()) {}

ValueStore::~ValueStore() {
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (auto& [name, record] : shard.values) {
      if (record.ttl_timer != 0) {
        timers_.Cancel(record.ttl_timer);
      }
      if (record.hook != 0 && sessions_ != nullptr) {
        sessions_->RemoveHook(record.session_id, record.hook);
      }
    }
  }
}

ValueStore::Shard& ValueStore::ShardFor(const std::string& name) const {
  return shards_[absl::Hash<std::string>{}(name) % kShards];
}

int64_t ValueStore::revision() const {
  absl::MutexLock lock(&log_mu_);
  return revision_;
}

Entry ValueStore::MakeEntry(const std::string& name, const Record& record, bool with_data) const {
  Entry entry;
  entry.name = name;
  entry.type = TypeOf(*record.data);
  if (with_data) {
    entry.data = record.data;
  }
  entry.version = record.version;
  entry.create_version = record.create_version;
  entry.create_time = record.create_time;
  entry.update_time = record.update_time;
  entry.expire_time = record.expire;
  entry.session_id = record.session_id;
  entry.length = Length(*record.data);
  entry.size_bytes = EncodedSize(*record.data);
  return entry;
}

void ValueStore::TrimHistory(absl::Time now) {
  while (!history_.empty()) {
    const int64_t size = static_cast<int64_t>(history_.size());
    const bool over_count = size > options_.history_events;
    const bool too_old = history_.front().time + options_.history_retention < now;
    if (size > options_.max_history_events || (over_count && too_old)) {
      history_.pop_front();
      ++first_version_;
    } else {
      break;
    }
  }
}

int64_t ValueStore::Append(EventKind kind, const std::string& name, const Record& record,
                           const std::optional<Element>& element, int64_t prev_version,
                           After& after) {
  const absl::Time now = timers_.Now();
  absl::MutexLock lock(&log_mu_);
  const int64_t version = ++revision_;
  Event event;
  event.kind = kind;
  event.version = version;
  event.entry = MakeEntry(name, record, kind == EventKind::kPut);
  if (kind == EventKind::kPut) {
    event.entry.version = version;
    event.entry.update_time = now;
    if (record.create_version == 0) {
      event.entry.create_version = version;
    }
  }
  event.element = element;
  event.prev_version = prev_version;
  event.time = now;
  history_.push_back(std::move(event));
  TrimHistory(now);
  for (Watch* watch : watches_) {
    if (watch->notify_ &&
        (watch->prefix_ ? absl::StartsWith(name, watch->key_) : name == watch->key_)) {
      after.notify.push_back(std::move(watch->notify_));
      watch->notify_ = nullptr;
    }
  }
  return version;
}

int64_t ValueStore::Commit(Shard& shard, const std::string& name, std::shared_ptr<const Data> data,
                           const std::optional<Element>& element, After& after) {
  const absl::Time now = timers_.Now();
  auto [it, inserted] = shard.values.try_emplace(name);
  Record& record = it->second;
  const int64_t prev_version = inserted ? 0 : record.version;
  record.data = std::move(data);
  if (inserted) {
    record.create_time = now;
  }
  const int64_t version = Append(EventKind::kPut, name, record, element, prev_version, after);
  if (inserted) {
    record.create_version = version;
  }
  record.version = version;
  record.update_time = now;
  return version;
}

int64_t ValueStore::Remove(Shard& shard, const std::string& name, EventKind kind, After& after) {
  auto it = shard.values.find(name);
  Record record = std::move(it->second);
  shard.values.erase(it);
  count_.fetch_sub(1, std::memory_order_relaxed);
  if (record.ttl_timer != 0) {
    after.cancel_timers.push_back(record.ttl_timer);
  }
  if (record.hook != 0) {
    after.remove_hooks.emplace_back(record.session_id, record.hook);
  }
  return Append(kind, name, record, std::nullopt, record.version, after);
}

void ValueStore::SetTtl(const std::string& name, Record& record, absl::Time expire, After& after) {
  if (record.ttl_timer != 0) {
    after.cancel_timers.push_back(record.ttl_timer);
    record.ttl_timer = 0;
  }
  record.expire = expire;
  if (expire != absl::InfiniteFuture()) {
    const int64_t create_version = record.create_version;
    record.ttl_timer =
        timers_.Schedule(expire, [this, name, create_version] { OnExpire(name, create_version); });
  }
}

void ValueStore::OnExpire(const std::string& name, int64_t create_version) {
  After after;
  {
    Shard& shard = ShardFor(name);
    absl::ReleasableMutexLock lock(&shard.mu);
    auto it = shard.values.find(name);
    if (it == shard.values.end() || it->second.create_version != create_version) {
      return;
    }
    if (it->second.expire > timers_.Now()) {
      // Fired early (or the TTL moved later and this timer was not cancelled in time): re-arm.
      it->second.ttl_timer = 0;
      SetTtl(name, it->second, it->second.expire, after);
      lock.Release();
      RunAfter(after);
      return;
    }
    it->second.ttl_timer = 0;  // running now
    Remove(shard, name, EventKind::kExpire, after);
  }
  RunAfter(after);
}

void ValueStore::OnSessionEnd(const std::string& name, const std::string& session_id,
                              int64_t create_version) {
  After after;
  {
    Shard& shard = ShardFor(name);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.values.find(name);
    if (it == shard.values.end() || it->second.create_version != create_version ||
        it->second.session_id != session_id) {
      return;
    }
    it->second.hook = 0;  // ran
    Remove(shard, name, EventKind::kDelete, after);
  }
  RunAfter(after);
}

void ValueStore::RunAfter(After& after) {
  for (TimerService::TimerId id : after.cancel_timers) {
    timers_.Cancel(id);
  }
  if (sessions_ != nullptr) {
    for (const auto& [session, hook] : after.remove_hooks) {
      sessions_->RemoveHook(session, hook);
    }
  }
  for (auto& notify : after.notify) {
    std::move(notify)();
  }
}

absl::Status ValueStore::CheckSize(const std::string& name, const Data& data) const {
  const int64_t size = EncodedSize(data);
  if (size > options_.max_value_bytes) {
    return ResourceExhausted("VALUE_TOO_LARGE",
                             absl::StrCat("value '", name, "' would be ", size,
                                          " bytes, over the limit of ", options_.max_value_bytes));
  }
  return absl::OkStatus();
}

absl::Status ValueStore::CheckCanCreate(const std::string& name) {
  if (count_.fetch_add(1, std::memory_order_relaxed) >= options_.max_values) {
    count_.fetch_sub(1, std::memory_order_relaxed);
    return ResourceExhausted("TOO_MANY_VALUES",
                             absl::StrCat("cannot create value '", name, "': the store holds ",
                                          options_.max_values, " values, its limit"));
  }
  return absl::OkStatus();
}

absl::StatusOr<GetResult> ValueStore::Get(const std::string& name,
                                          const std::optional<Element>& element,
                                          bool keys_only) const {
  Shard& shard = ShardFor(name);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.values.find(name);
  if (it == shard.values.end()) {
    return NotFoundValue(name);
  }
  const Record& record = it->second;
  GetResult result;
  result.entry = MakeEntry(name, record, !element.has_value() && !keys_only);
  if (element.has_value()) {
    SPINDLE_ASSIGN_OR_RETURN(result.element, ReadElement(name, *record.data, *element));
  } else if (keys_only) {
    const auto* map = std::get_if<Map>(record.data.get());
    if (map == nullptr) {
      return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(*record.data)),
                                   ", not a map: keys_only does not apply"));
    }
    for (const auto& [key, scalar] : *map) {
      result.keys.push_back(key);
    }
  }
  return result;
}

absl::StatusOr<SetResult> ValueStore::Set(SetRequest request) {
  const std::string& name = request.name;
  if (request.only_if_absent && (request.only_if_version != 0 || request.element.has_value())) {
    return InvalidArgument("INVALID_ARGUMENT",
                           "only_if_absent cannot be combined with only_if_version or element");
  }
  if (request.keep_ttl && request.ttl > absl::ZeroDuration()) {
    return InvalidArgument("INVALID_ARGUMENT", "keep_ttl requires ttl_ms 0");
  }
  const bool whole = !request.element.has_value();
  if (whole) {
    SPINDLE_RETURN_IF_ERROR(CheckSize(name, request.data));
  }
  std::optional<Scalar> scalar;
  if (!whole) {
    SPINDLE_ASSIGN_OR_RETURN(scalar, DataToScalar(request.data, "data"));
  }
  if (!request.session_id.empty()) {
    if (sessions_ == nullptr) {
      return FailedPrecondition("SESSIONS_UNAVAILABLE",
                                absl::StrCat("session_id '", request.session_id,
                                             "' given but sessions are not available"));
    }
    SPINDLE_RETURN_IF_ERROR(sessions_->CheckAlive(request.session_id));
  }
  After after;
  SetResult result;
  std::optional<std::pair<std::string, int64_t>> bind;  // session to hook, create_version
  {
    Shard& shard = ShardFor(name);
    absl::MutexLock lock(&shard.mu);
    if (request.guard) {
      SPINDLE_RETURN_IF_ERROR(request.guard());
    }
    auto it = shard.values.find(name);
    const bool exists = it != shard.values.end();
    if (request.only_if_version != 0 &&
        (!exists || it->second.version != request.only_if_version)) {
      return Aborted("VERSION_MISMATCH", absl::StrCat("value '", name, "' is at version ",
                                                      exists ? it->second.version : 0, ", not ",
                                                      request.only_if_version));
    }
    if (request.only_if_absent && exists) {
      return AlreadyExists("VALUE_EXISTS", absl::StrCat("value '", name, "' already exists"));
    }
    std::shared_ptr<const Data> data;
    if (whole) {
      data = std::make_shared<const Data>(std::move(request.data));
      if (request.return_previous && exists) {
        result.previous = *it->second.data;
      }
    } else if (!exists) {
      if (std::holds_alternative<int64_t>(*request.element)) {
        return NotFoundValue(name);
      }
      data = std::make_shared<const Data>(Map{{std::get<std::string>(*request.element), *scalar}});
    } else {
      SPINDLE_ASSIGN_OR_RETURN(Data updated,
                               WriteElement(name, *it->second.data, *request.element, *scalar));
      SPINDLE_RETURN_IF_ERROR(CheckSize(name, updated));
      if (request.return_previous) {
        auto old = ReadElement(name, *it->second.data, *request.element);
        if (old.ok()) {
          result.previous = ScalarToData(*old);
        }
      }
      data = std::make_shared<const Data>(std::move(updated));
    }
    if (!exists) {
      SPINDLE_RETURN_IF_ERROR(CheckCanCreate(name));
    }
    result.prev_version = exists ? it->second.version : 0;
    Commit(shard, name, std::move(data), request.element, after);
    Record& record = shard.values[name];
    if (whole || !exists) {
      // Whole writes set TTL and session binding; element writes keep them.
      absl::Time expire = absl::InfiniteFuture();
      if (request.ttl > absl::ZeroDuration()) {
        expire = timers_.Now() + request.ttl;
      } else if (request.keep_ttl) {
        expire = record.expire;
      }
      if (expire != record.expire || request.ttl > absl::ZeroDuration()) {
        SetTtl(name, record, expire, after);
      }
      if (record.session_id != request.session_id) {
        if (record.hook != 0) {
          after.remove_hooks.emplace_back(record.session_id, record.hook);
          record.hook = 0;
        }
        record.session_id = request.session_id;
        if (!request.session_id.empty()) {
          bind.emplace(request.session_id, record.create_version);
        }
      }
    }
    result.entry = MakeEntry(name, record, false);
  }
  RunAfter(after);
  if (bind.has_value()) {
    // Registered outside the shard lock: the session table may run hooks of its own.
    const std::string session = bind->first;
    const int64_t create_version = bind->second;
    auto hook = sessions_->OnEnd(session, [this, name, session, create_version] {
      OnSessionEnd(name, session, create_version);
    });
    if (!hook.ok()) {
      // The session ended between the check and now: the value goes with it.
      OnSessionEnd(name, session, create_version);
    } else {
      Shard& shard = ShardFor(name);
      absl::MutexLock lock(&shard.mu);
      auto it = shard.values.find(name);
      if (it != shard.values.end() && it->second.create_version == create_version &&
          it->second.session_id == session) {
        it->second.hook = *hook;
      } else {
        sessions_->RemoveHook(session, *hook);
      }
    }
  }
  return result;
}

absl::StatusOr<AddResult> ValueStore::Add(const std::string& name,
                                          const std::optional<Element>& element, Delta delta,
                                          absl::Duration ttl, const std::string& request_id,
                                          const WriteGuard& guard) {
  if (request_id.empty()) {
    return AddOnce(name, element, delta, ttl, guard);
  }
  // Look-up, add and record are one step under add_mu_ (taken before any shard lock), so two
  // copies of a request arriving together cannot both add.
  absl::MutexLock lock(&add_mu_);
  if (const AddResult* original = add_requests_.Find(request_id, timers_.Now())) {
    return *original;
  }
  absl::StatusOr<AddResult> result = AddOnce(name, element, delta, ttl, guard);
  if (result.ok()) {
    add_requests_.Record(request_id, *result, timers_.Now());
  }
  return result;
}

absl::StatusOr<AddResult> ValueStore::AddOnce(const std::string& name,
                                              const std::optional<Element>& element, Delta delta,
                                              absl::Duration ttl, const WriteGuard& guard) {
  After after;
  AddResult result;
  {
    Shard& shard = ShardFor(name);
    absl::MutexLock lock(&shard.mu);
    if (guard) {
      SPINDLE_RETURN_IF_ERROR(guard());
    }
    auto it = shard.values.find(name);
    std::shared_ptr<const Data> data;
    if (it == shard.values.end()) {
      if (element.has_value() && std::holds_alternative<int64_t>(*element)) {
        return NotFoundValue(name);
      }
      result.result = DeltaScalar(delta);
      result.created = true;
      if (element.has_value()) {
        data = std::make_shared<const Data>(Map{{std::get<std::string>(*element), result.result}});
      } else {
        data = std::make_shared<const Data>(ScalarToData(result.result));
      }
      SPINDLE_RETURN_IF_ERROR(CheckCanCreate(name));
    } else if (!element.has_value()) {
      const Data& current = *it->second.data;
      if (current.index() > 1) {
        return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(current)),
                                     ", not a number: add applies to int64 and double"));
      }
      SPINDLE_ASSIGN_OR_RETURN(Scalar current_scalar, DataToScalar(current, "value"));
      SPINDLE_ASSIGN_OR_RETURN(
          result.result, AddScalar(absl::StrCat("value '", name, "'"), current_scalar, delta));
      data = std::make_shared<const Data>(ScalarToData(result.result));
    } else {
      const Data& current = *it->second.data;
      auto old = ReadElement(name, current, *element);
      if (!old.ok() && Reason(old.status()) == "KEY_NOT_FOUND") {
        result.result = DeltaScalar(delta);
        result.created = true;
      } else if (!old.ok()) {
        return old.status();
      } else {
        SPINDLE_ASSIGN_OR_RETURN(
            result.result,
            AddScalar(absl::StrCat("element ", ElementText(*element), " of '", name, "'"), *old,
                      delta));
      }
      SPINDLE_ASSIGN_OR_RETURN(Data updated, WriteElement(name, current, *element, result.result));
      SPINDLE_RETURN_IF_ERROR(CheckSize(name, updated));
      data = std::make_shared<const Data>(std::move(updated));
    }
    const bool created_value = it == shard.values.end();
    result.version = Commit(shard, name, std::move(data), element, after);
    if (created_value && ttl > absl::ZeroDuration()) {
      SetTtl(name, shard.values[name], timers_.Now() + ttl, after);
    }
  }
  RunAfter(after);
  return result;
}

absl::StatusOr<CasResult> ValueStore::CompareAndSwap(const std::string& name,
                                                     const std::optional<Element>& element,
                                                     const Expected& expected,
                                                     const Data& new_value,
                                                     const WriteGuard& guard) {
  std::optional<Scalar> new_scalar;
  if (element.has_value()) {
    SPINDLE_ASSIGN_OR_RETURN(new_scalar, DataToScalar(new_value, "new_value"));
    if (std::holds_alternative<ExpectAbsent>(expected) &&
        std::holds_alternative<int64_t>(*element)) {
      return InvalidArgument("INVALID_ARGUMENT",
                             "expect_absent with an array index: array elements always exist");
    }
  } else {
    SPINDLE_RETURN_IF_ERROR(CheckSize(name, new_value));
  }
  After after;
  CasResult result;
  {
    Shard& shard = ShardFor(name);
    absl::MutexLock lock(&shard.mu);
    if (guard) {
      SPINDLE_RETURN_IF_ERROR(guard());
    }
    auto it = shard.values.find(name);
    const bool exists = it != shard.values.end();
    // Does the condition hold?
    bool match = false;
    std::optional<Scalar> current_element;
    if (exists && element.has_value()) {
      auto read = ReadElement(name, *it->second.data, *element);
      if (read.ok()) {
        current_element = *read;
      } else if (Reason(read.status()) != "KEY_NOT_FOUND") {
        return read.status();
      }
    } else if (!exists && element.has_value() && std::holds_alternative<int64_t>(*element)) {
      return NotFoundValue(name);
    }
    if (const auto* absent = std::get_if<ExpectAbsent>(&expected)) {
      (void)absent;
      match = element.has_value() ? !current_element.has_value() : !exists;
    } else if (const auto* version = std::get_if<int64_t>(&expected)) {
      match = exists && it->second.version == *version;
    } else {
      const Data& want = std::get<Data>(expected);
      if (element.has_value()) {
        auto want_scalar = DataToScalar(want, "expected_value");
        match = want_scalar.ok() && current_element.has_value() && *current_element == *want_scalar;
      } else {
        match = exists && *it->second.data == want;
      }
    }
    if (!match) {
      if (exists) {
        result.current = MakeEntry(name, it->second, true);
      }
      return result;
    }
    std::shared_ptr<const Data> data;
    if (!element.has_value()) {
      data = std::make_shared<const Data>(new_value);
    } else if (!exists) {
      data = std::make_shared<const Data>(Map{{std::get<std::string>(*element), *new_scalar}});
    } else {
      SPINDLE_ASSIGN_OR_RETURN(Data updated,
                               WriteElement(name, *it->second.data, *element, *new_scalar));
      SPINDLE_RETURN_IF_ERROR(CheckSize(name, updated));
      data = std::make_shared<const Data>(std::move(updated));
    }
    if (!exists) {
      SPINDLE_RETURN_IF_ERROR(CheckCanCreate(name));
    }
    Commit(shard, name, std::move(data), element, after);
    result.swapped = true;
    result.current = MakeEntry(name, shard.values[name], true);
  }
  RunAfter(after);
  return result;
}

absl::StatusOr<DeleteResult> ValueStore::Delete(const std::string& name,
                                                const std::optional<Element>& element,
                                                int64_t only_if_version, const WriteGuard& guard) {
  if (element.has_value() && std::holds_alternative<int64_t>(*element)) {
    return InvalidArgument("INVALID_ELEMENT", absl::StrCat("element: cannot delete index ",
                                                           std::get<int64_t>(*element), " of '",
                                                           name, "': arrays have a fixed length"));
  }
  After after;
  DeleteResult result;
  {
    Shard& shard = ShardFor(name);
    absl::MutexLock lock(&shard.mu);
    if (guard) {
      SPINDLE_RETURN_IF_ERROR(guard());
    }
    auto it = shard.values.find(name);
    if (it == shard.values.end()) {
      return NotFoundValue(name);
    }
    if (only_if_version != 0 && it->second.version != only_if_version) {
      return Aborted("VERSION_MISMATCH",
                     absl::StrCat("value '", name, "' is at version ", it->second.version, ", not ",
                                  only_if_version));
    }
    result.prev_version = it->second.version;
    if (!element.has_value()) {
      result.version = Remove(shard, name, EventKind::kDelete, after);
    } else {
      const auto* map = std::get_if<Map>(it->second.data.get());
      if (map == nullptr) {
        return Mismatch(absl::StrCat("value '", name, "' is a ", TypeName(TypeOf(*it->second.data)),
                                     ", not a map: a key does not apply"));
      }
      const std::string& key = std::get<std::string>(*element);
      if (!map->contains(key)) {
        return NotFound("KEY_NOT_FOUND", absl::StrCat("map '", name, "' has no key '", key, "'"));
      }
      Map copy = *map;
      copy.erase(key);
      result.version =
          Commit(shard, name, std::make_shared<const Data>(std::move(copy)), element, after);
    }
  }
  RunAfter(after);
  return result;
}

absl::StatusOr<ListPage> ValueStore::List(const std::string& prefix, int type, int32_t page_size,
                                          const std::string& page_token, bool names_only) const {
  if (page_size < 0 || page_size > 1000) {
    return InvalidArgument("INVALID_PAGE_SIZE",
                           absl::StrCat("page_size ", page_size, " is outside 0..1000"));
  }
  if (page_size == 0) {
    page_size = 100;
  }
  if (!page_token.empty() && !ValidateName("page_token", page_token).ok()) {
    return InvalidArgument("INVALID_PAGE_TOKEN", absl::StrCat("page_token '", page_token,
                                                              "' is not a token of ListValues"));
  }
  ListPage page;
  page.current_version = revision();
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (const auto& [name, record] : shard.values) {
      if (!absl::StartsWith(name, prefix) || (!page_token.empty() && name <= page_token) ||
          (type != 0 && static_cast<int>(TypeOf(*record.data)) != type)) {
        continue;
      }
      page.entries.push_back(MakeEntry(name, record, !names_only));
    }
  }
  std::sort(page.entries.begin(), page.entries.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  if (page.entries.size() > static_cast<size_t>(page_size)) {
    page.entries.resize(page_size);
    page.next_page_token = page.entries.back().name;
  }
  return page;
}

absl::StatusOr<ValueStore::WatchStart> ValueStore::StartWatch(const std::string& key, bool prefix,
                                                              int64_t from_version,
                                                              bool initial_state) {
  auto watch = std::make_shared<Watch>();
  watch->prefix_ = prefix;
  watch->key_ = key;
  WatchStart start;
  if (initial_state) {
    // A consistent cut: every shard, then the history, so no write slips between the read and
    // the watch's start.
    for (Shard& shard : shards_) {
      shard.mu.Lock();
    }
    for (Shard& shard : shards_) {
      for (const auto& [name, record] : shard.values) {
        if (prefix ? absl::StartsWith(name, key) : name == key) {
          start.initial.push_back(MakeEntry(name, record, true));
        }
      }
    }
  }
  absl::Status status;
  {
    absl::MutexLock lock(&log_mu_);
    if (static_cast<int64_t>(watches_.size()) >= options_.max_watches) {
      status = ResourceExhausted(
          "TOO_MANY_WATCHES",
          absl::StrCat("the server holds ", options_.max_watches, " watches, its limit"));
    } else {
      watch->next_version_ = from_version > 0 ? from_version : revision_ + 1;
      start.initial_version = revision_;
      watches_.insert(watch.get());
    }
  }
  if (initial_state) {
    for (auto shard = shards_.rbegin(); shard != shards_.rend(); ++shard) {
      shard->mu.Unlock();
    }
  }
  SPINDLE_RETURN_IF_ERROR(status);
  std::sort(start.initial.begin(), start.initial.end(),
            [](const Entry& a, const Entry& b) { return a.name < b.name; });
  start.watch = std::move(watch);
  return start;
}

WatchPoll ValueStore::Poll(Watch& watch, size_t max_events, absl::AnyInvocable<void() &&> notify) {
  WatchPoll poll;
  absl::MutexLock lock(&log_mu_);
  const bool started = watch.started_;
  watch.started_ = true;
  if (watch.stopped_) {
    poll.progress_version = watch.next_version_ - 1;
    return poll;
  }
  // Lost changes: the next version was trimmed, or the watch is too far behind.
  if (watch.next_version_ < first_version_ && watch.next_version_ <= revision_) {
    poll.compacted = WatchPoll::Compacted{started, first_version_, revision_, watch.next_version_};
    return poll;
  }
  if (revision_ - watch.next_version_ + 1 > options_.max_watch_lag) {
    poll.compacted = WatchPoll::Compacted{true, first_version_, revision_, watch.next_version_};
    return poll;
  }
  while (watch.next_version_ <= revision_ && poll.events.size() < max_events) {
    const Event& event = history_[watch.next_version_ - first_version_];
    ++watch.next_version_;
    if (watch.prefix_ ? absl::StartsWith(event.entry.name, watch.key_)
                      : event.entry.name == watch.key_) {
      poll.events.push_back(event);
    }
  }
  poll.progress_version = std::min(watch.next_version_ - 1, revision_);
  if (poll.events.empty()) {
    watch.notify_ = std::move(notify);
  }
  return poll;
}

void ValueStore::StopWatch(Watch& watch) {
  absl::AnyInvocable<void() &&> dropped;
  absl::MutexLock lock(&log_mu_);
  if (!watch.stopped_) {
    watch.stopped_ = true;
    watches_.erase(&watch);
  }
  dropped = std::move(watch.notify_);
  watch.notify_ = nullptr;
}

ValueStore::Stats ValueStore::GetStats() const {
  Stats stats;
  stats.values = count_.load(std::memory_order_relaxed);
  absl::MutexLock lock(&log_mu_);
  stats.watchers = static_cast<int64_t>(watches_.size());
  stats.revision = revision_;
  stats.history_events = static_cast<int64_t>(history_.size());
  return stats;
}

}  // namespace spindle::value
