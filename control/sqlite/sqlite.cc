#include "control/sqlite/sqlite.h"

namespace airlock::control::sqlite {
namespace {

// Writers batch their commits, so a reader or a second process waits milliseconds at most;
// 5 s only bounds a stuck one.
constexpr int kBusyTimeoutMs = 5000;

}  // namespace

Stmt prepare(sqlite3* db, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  return Stmt(stmt);
}

int exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
}

int bind_text(sqlite3_stmt* stmt, int index, std::string_view text) {
  return sqlite3_bind_text64(stmt, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
}

int bind_blob(sqlite3_stmt* stmt, int index, const std::optional<std::string>& blob) {
  if (!blob) return sqlite3_bind_null(stmt, index);
  return sqlite3_bind_blob64(stmt, index, blob->data(), blob->size(), SQLITE_STATIC);
}

std::string column_text(sqlite3_stmt* stmt, int column) {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, column));
  const int size = sqlite3_column_bytes(stmt, column);
  return text ? std::string(text, static_cast<size_t>(size)) : std::string();
}

std::optional<std::string> column_blob(sqlite3_stmt* stmt, int column) {
  if (sqlite3_column_type(stmt, column) == SQLITE_NULL) return std::nullopt;
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, column));
  const int size = sqlite3_column_bytes(stmt, column);
  return data ? std::string(data, static_cast<size_t>(size)) : std::string();
}

bool bind_params(sqlite3_stmt* stmt, const std::vector<Param>& params) {
  int index = 1;
  for (const auto& param : params) {
    const int rc = std::holds_alternative<int64_t>(param)
                       ? sqlite3_bind_int64(stmt, index, std::get<int64_t>(param))
                       : bind_text(stmt, index, std::get<std::string>(param));
    if (rc != SQLITE_OK) return false;
    ++index;
  }
  return true;
}

std::optional<std::string> pragma(sqlite3* db, const char* sql) {
  const Stmt stmt = prepare(db, sql);
  if (!stmt || sqlite3_step(stmt.get()) != SQLITE_ROW) return std::nullopt;
  return column_text(stmt.get(), 0);
}

std::string describe(std::string_view what, const std::string& path, sqlite3* db) {
  return "cannot open " + std::string(what) + " '" + path +
         "': " + (db ? sqlite3_errmsg(db) : "out of memory");
}

Db open(std::string_view what, const std::string& path, int flags, std::string* error) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);  // sqlite3_open_v2 allocates a handle even when it fails
  if (rc != SQLITE_OK) {
    *error = describe(what, path, db.get());
    return nullptr;
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
  return db;
}

bool configure_writer(std::string_view what, const std::string& path, sqlite3* db,
                      std::string* error) {
  const std::optional<std::string> mode = pragma(db, "PRAGMA journal_mode = WAL");
  if (!mode) {
    *error = describe(what, path, db);
    return false;
  }
  if (*mode != "wal") {
    *error = "cannot open " + std::string(what) + " '" + path +
             "': WAL mode unavailable (journal mode " + *mode + ")";
    return false;
  }
  if (exec(db, "PRAGMA synchronous = NORMAL") != SQLITE_OK ||
      exec(db, "PRAGMA foreign_keys = ON") != SQLITE_OK) {
    *error = describe(what, path, db);
    return false;
  }
  return true;
}

}  // namespace airlock::control::sqlite
