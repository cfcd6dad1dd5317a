<?php
echo getmypid();
ob_flush();
for (;;) { $x = md5("x"); }
