from mlbox_bench.cli import main

raise SystemExit(main())
