#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "base/crypto.h"

int main(int argc, char** argv) {
  custos::CryptoInit();
  return Catch::Session().run(argc, argv);
}
