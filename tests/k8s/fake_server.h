// Runs tests/fake-apiserver/fake_apiserver.py as a subprocess on loopback and talks to its
// plain-HTTP control port. The server exits when this object closes its stdin.
#pragma once

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace kipvs::k8s::testing {

class FakeServer {
  public:
    explicit FakeServer(const std::vector<std::string>& args) {
        int in[2];
        int out[2];
        if (pipe(in) != 0 || pipe(out) != 0) {
            throw std::runtime_error("pipe");
        }
        pid_ = fork();
        if (pid_ == 0) {
            dup2(in[0], 0);
            dup2(out[1], 1);
            close(in[1]);
            close(out[0]);
            std::vector<std::string> argv = {PYTHON3, FAKE_APISERVER, "--exit-on-stdin-eof"};
            argv.insert(argv.end(), args.begin(), args.end());
            std::vector<char*> cargs;
            for (auto& a : argv) {
                cargs.push_back(a.data());
            }
            cargs.push_back(nullptr);
            execv(cargs[0], cargs.data());
            _exit(127);
        }
        close(in[0]);
        close(out[1]);
        stdin_ = in[1];
        FILE* f = fdopen(out[0], "r");
        char line[256];
        while (f != nullptr && fgets(line, sizeof line, f) != nullptr) {
            std::string l(line);
            if (l.rfind("PORT ", 0) == 0) {
                port = std::stoi(l.substr(5));
            } else if (l.rfind("CONTROL_PORT ", 0) == 0) {
                controlPort = std::stoi(l.substr(13));
            } else if (l.rfind("READY", 0) == 0) {
                break;
            }
        }
        stdout_ = f;
        if (port == 0 || controlPort == 0) {
            throw std::runtime_error("fake apiserver did not start");
        }
    }

    ~FakeServer() {
        close(stdin_);
        if (stdout_ != nullptr) {
            fclose(stdout_);
        }
        int status = 0;
        for (int i = 0; i < 100; ++i) {
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                return;
            }
            usleep(20000);
        }
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
    }

    FakeServer(const FakeServer&) = delete;
    FakeServer& operator=(const FakeServer&) = delete;

    // One control request; returns the JSON reply.
    boost::json::value control(const std::string& method, const std::string& path,
                               const std::string& body = "") {
        namespace beast = boost::beast;
        namespace http = beast::http;
        boost::asio::io_context ioc;
        boost::asio::ip::tcp::socket sock(ioc);
        sock.connect(
            {boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(controlPort)});
        http::request<http::string_body> req(method == "POST"     ? http::verb::post
                                             : method == "DELETE" ? http::verb::delete_
                                                                  : http::verb::get,
                                             "/__fake/" + path, 11);
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        http::write(sock, req);
        beast::flat_buffer buf;
        http::response<http::string_body> res;
        http::read(sock, buf, res);
        lastStatus = res.result_int();
        return boost::json::parse(res.body());
    }
    boost::json::value post(const std::string& path, const std::string& body) {
        return control("POST", path, body);
    }

    int port = 0;
    int controlPort = 0;
    unsigned lastStatus = 0;

  private:
    pid_t pid_ = -1;
    int stdin_ = -1;
    FILE* stdout_ = nullptr;
};

}  // namespace kipvs::k8s::testing
