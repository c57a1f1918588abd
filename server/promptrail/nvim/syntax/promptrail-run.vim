" One run as :PromptrailShow shows it: `field value` lines, its files and its log.
if exists("b:current_syntax")
  finish
endif

syntax match promptrailRunField /^\(run\|prompt\|status\|actor\|agent\|mode\|base\|commit\|tokens\|cost\|gate\|started\|ended\|error\|CLAUDE\.md\|files\|log\)\>/
syntax match promptrailRunTime /^  \d\d:\d\d:\d\d\(\.\d\+\)\=/
syntax match promptrailRunAdded /+\d\+/
syntax match promptrailRunRemoved /−\d\+/

highlight default link promptrailRunField Identifier
highlight default link promptrailRunTime Comment
highlight default link promptrailRunAdded DiffAdd
highlight default link promptrailRunRemoved DiffDelete

let b:current_syntax = "promptrail-run"
