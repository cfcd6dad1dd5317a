<?php
sleep((int)($_GET["s"] ?? 30));
echo "woke ", getmypid();
