// Real upstream servers: php-fpm with a generated pool, gunicorn.
#include <unistd.h>

#include <sstream>

#include "lab/lab_internal.h"
#include "why502/lab.h"

namespace why502::lab {

PhpFpm::PhpFpm(PhpFpmOptions opts, const std::string &dir) {
  socket_ = dir + "/php-fpm.sock";
  script_ = dir + "/slow.php";
  log_ = dir + "/php-fpm.log";
  std::ostringstream conf;
  conf << "[global]\n"
       << "pid = " << dir << "/php-fpm.pid\n"
       << "error_log = " << log_ << "\n"
       << "daemonize = no\n"
       << "[why502]\n"
       // -R lets the pool run as root (the lab runs as root; no lab user to create).
       << "user = root\ngroup = root\n"
       << "listen = " << socket_ << "\n"
       << "listen.backlog = " << opts.listen_backlog << "\n"
       << "listen.mode = 0666\n"
       << "pm = static\n"
       << "pm.max_children = " << opts.max_children << "\n"
       << "pm.max_requests = " << opts.max_requests << "\n"
       << "catch_workers_output = yes\n";
  write_file(dir + "/php-fpm.conf", conf.str());
  write_file(script_, "<?php\nusleep(" + std::to_string(long(opts.script_sleep * 1e6)) +
                          ");\nheader('Content-Type: text/plain');\necho \"ok\\n\";\n");
  unlink(socket_.c_str());
  SpawnOptions so;
  so.stdout_path = dir + "/php-fpm.stderr";
  proc_ = spawn_server({opts.binary, "-R", "-F", "-n", "-y", dir + "/php-fpm.conf"}, address(), so);
  // Wait for the static pool's children, so the first request does not race the fork.
  wait_until([&] { return int(child_pids(proc_.pid()).size()) >= opts.max_children; }, 10.0);
}

PhpFpm::~PhpFpm() {
  proc_.stop(SIGQUIT, 5.0);
  unlink(socket_.c_str());
}

Gunicorn::Gunicorn(GunicornOptions opts, const std::string &log_path) {
  port_ = opts.port ? opts.port : free_port();
  SpawnOptions so;
  so.stdout_path = log_path;
  so.cwd = opts.app_dir;
  so.env["PYTHONDONTWRITEBYTECODE"] = "1";
  proc_ = spawn_server({opts.python, "-m", "gunicorn", "--bind", address(), "--workers", std::to_string(opts.workers),
                        "--timeout", std::to_string(opts.timeout), "--backlog", std::to_string(opts.backlog),
                        "--chdir", opts.app_dir, opts.app},
                       address(), so, 20.0);
  wait_until([&] { return int(child_pids(proc_.pid()).size()) >= opts.workers; }, 10.0);
}

Gunicorn::~Gunicorn() { proc_.stop(SIGTERM, 5.0); }

} // namespace why502::lab
