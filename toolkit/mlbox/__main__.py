from mlbox.cli import main

raise SystemExit(main())
