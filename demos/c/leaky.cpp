// leaky.cpp: C++ leaks through libstdc++ and RAII gone wrong, built with g++ -O2 -g and no
// frame pointers: tracer must unwind from inside glibc and libstdc++ to main and show
// demangled names (namespaces, classes, templates, overloads). Each leak happens `count` times.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace pool {

// A connection pool that forgets to close what it hands out.
class Connections {
 public:
  __attribute__((noinline)) int open_one(int family) {
    int fd = socket(family, SOCK_STREAM, 0);  // tracer-demo: leak site (socket)
    if (fd >= 0) handed_out_++;
    return fd;
  }

 private:
  int handed_out_ = 0;
};

}  // namespace pool

// Streams allocated and never deleted: their files stay open.
template <typename Stream>
__attribute__((noinline)) Stream* open_stream(const std::string& path) {
  return new Stream(path);  // tracer-demo: leak site (stream)
}

// A FILE* kept in a vector that is never drained.
__attribute__((noinline)) void remember(std::vector<std::FILE*>& kept, const char* path) {
  kept.push_back(std::fopen(path, "r"));  // tracer-demo: leak site (fopen)
}

// Done right: the descriptor is closed when the stream goes out of scope.
__attribute__((noinline)) bool read_ok(const std::string& path) {
  std::ifstream in(path);
  return in.good();
}

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 3;
  pool::Connections conns;
  std::vector<std::FILE*> kept;
  for (int i = 0; i < count; i++) {
    conns.open_one(AF_INET);
    open_stream<std::ifstream>("/etc/hostname");
    remember(kept, "/etc/passwd");
    read_ok("/etc/hostname");
  }
  std::printf("leaked %d sockets, %d streams, %d FILEs\n", count, count, count);
  return 0;
}
