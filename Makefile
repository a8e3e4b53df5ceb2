# The two README commands: `make demo` and `make test`.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)

.PHONY: all deps build test test-release test-asan demo fuzz clean

all: build

deps:
	@sh scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Debug-style build (assertions on, -O1) under ASan + UBSan with leak checking, clang so
# the libFuzzer targets build too; every fuzzer runs over its seed corpus.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Sanitize \
	  -DCMAKE_C_FLAGS_SANITIZE="-O1 -g" -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g" -DTESSERA_SANITIZE=ON -DTESSERA_FUZZ=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j$(JOBS)

test: test-release test-asan

# The sample media, then the tiny random-weight Qwen2-VL model in assets/ describing the image
# (streamed, then once more as JSON with token counts and timings), then the audio path: the
# tiny MiniCPM-o test model on the sample image and speech (a raw prompt with its
# placeholders: the official template is not shipped). The weights are random: the text is
# arbitrary; the demo shows the whole path runs.
DEMO_RUN = ./$(BUILD)/tessera run --model assets/qwen2-vl-tiny --image assets/sample.jpg \
	-p "Describe this image." --max-tokens 16
demo: build
	./$(BUILD)/tessera info assets/sample.*
	$(DEMO_RUN)
	$(DEMO_RUN) --json
	./$(BUILD)/tessera run --model tests/fixtures/models/minicpmo/model --no-template \
	  --image assets/sample.png --audio assets/sample.wav --max-tokens 16 \
	  -p "(<image>./</image>)(<audio>./</audio>)What is in the picture and the clip?"

# Longer fuzzing: make fuzz FUZZER=fuzz_image SECONDS=600
FUZZER  ?= fuzz_image
SECONDS ?= 300
fuzz: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Sanitize \
	  -DCMAKE_C_FLAGS_SANITIZE="-O1 -g" -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g" -DTESSERA_SANITIZE=ON -DTESSERA_FUZZ=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS) --target $(FUZZER)
	mkdir -p $(ASAN_BUILD)/corpus/$(FUZZER)
	./$(ASAN_BUILD)/tests/$(FUZZER) -max_total_time=$(SECONDS) $(ASAN_BUILD)/corpus/$(FUZZER) \
	  $$(sh tests/fuzz/run_seeds.sh --list $(FUZZER) tests/fixtures)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
