<?php
error_log("a line from error_log()");
trigger_error("a user warning", E_USER_WARNING);
echo "ok";
