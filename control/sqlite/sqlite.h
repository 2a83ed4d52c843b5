// The SQLite plumbing every control-plane database shares (request log, budget ledger, webhook
// outbox): owning handles, binding and reading columns, and opening a file for one writer thread
// in WAL mode. The SQL itself stays with each database.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace airlock::control::sqlite {

struct DbClose {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbClose>;

struct StmtFinalize {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalize>;

// nullptr when the SQL does not compile (sqlite3_errmsg says why).
Stmt prepare(sqlite3* db, std::string_view sql);
int exec(sqlite3* db, const char* sql);

// The bound text and blobs must outlive the step: they are bound without a copy.
int bind_text(sqlite3_stmt* stmt, int index, std::string_view text);
// nullopt binds NULL; an empty string stays an empty BLOB.
int bind_blob(sqlite3_stmt* stmt, int index, const std::optional<std::string>& blob);
std::string column_text(sqlite3_stmt* stmt, int column);
std::optional<std::string> column_blob(sqlite3_stmt* stmt, int column);

// Query parameters bound in order of their `?` in the SQL text.
using Param = std::variant<int64_t, std::string>;
bool bind_params(sqlite3_stmt* stmt, const std::vector<Param>& params);

// A single-row statement's (e.g. a PRAGMA's) first column as text.
std::optional<std::string> pragma(sqlite3* db, const char* sql);

// "cannot open <what> '<path>': <SQLite's message>", e.g. what = "request log".
std::string describe(std::string_view what, const std::string& path, sqlite3* db);

// Opens `path` with `flags` (SQLITE_OPEN_*), extended result codes and a 5 s busy timeout, for
// use from one thread at a time.
Db open(std::string_view what, const std::string& path, int flags, std::string* error);

// WAL with synchronous = NORMAL (a commit survives a process crash; only power loss can undo the
// last commits, and never corrupts the file) and foreign keys on.
bool configure_writer(std::string_view what, const std::string& path, sqlite3* db,
                      std::string* error);

}  // namespace airlock::control::sqlite
